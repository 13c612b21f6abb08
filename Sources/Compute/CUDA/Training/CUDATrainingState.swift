#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CCUDA

/// Operand precision of the CUDA backend's training GEMMs.
public enum CUDATrainingPrecision: String, Sendable, CaseIterable {
    /// Every GEMM in f32 (`CUBLAS_COMPUTE_32F_PEDANTIC`: no TF32, no reduced-precision reductions):
    /// the parity mode, equal to the CPU up to float reassociation.
    case f32
    /// The mixed recipe: f32 master weights, bf16 GEMM operands with f32 accumulation and f32 outputs;
    /// attention's products on bf16 operands (as PyTorch autocast's SDPA; ``CUDATrainingAttention``);
    /// norms, softmax statistics and the loss in f32.
    case bf16Mixed = "bf16-mixed"
}

/// The kernels of training attention (`causalAttention`, `causalAttentionBackward`) in bf16-mixed precision.
/// f32 precision always runs the f32 kernels: it is the parity mode.
public enum CUDATrainingAttention: String, Sendable, CaseIterable {
    /// The f32 kernels on CUDA cores (`TrainingKernelsAttention.swift`).
    case f32
    /// The tensor-core kernels: bf16 operands, f32 statistics and accumulators (`TrainingKernelsAttentionTC.swift`),
    /// on sm_80 and newer for head dims ≤ 128; elsewhere the f32 kernels.
    case tensorCores = "tc"

    /// `COLOCATE_TRAINING_ATTENTION` (`f32` or `tc`); `.tensorCores` when unset or empty.
    public static func fromEnvironment(_ value: String? = getenv("COLOCATE_TRAINING_ATTENTION").map { String(cString: $0) })
        throws(ComputeError) -> CUDATrainingAttention {
        guard let value, !value.isEmpty else { return .tensorCores }
        guard let choice = CUDATrainingAttention(rawValue: value) else {
            throw ComputeError("COLOCATE_TRAINING_ATTENTION must be f32 or tc, not '\(value)'")
        }
        return choice
    }
}

/// The backend's training state, touched on the device's thread only (except `pool` and `precision`,
/// which are set before training starts): GEMM plans, named workspaces that grow and are reused, and
/// which kernels were allowed more than 48 KiB of dynamic shared memory.
final class CUDATrainingState {
    var precision: CUDATrainingPrecision = .f32
    /// The attention kernels of bf16-mixed precision; nil: `COLOCATE_TRAINING_ATTENTION`.
    var attention: CUDATrainingAttention?
    var pool: CUDAMemoryPool?
    var gemm: CUBLASLtTrainingGEMM?
    var workspaces: [Workspace: CUDABuffer] = [:]
    var sharedMemoryConfigured: Set<String> = []
    /// Counts the backend's ops (and host writes), so that a conversion can tell it is still fresh.
    var operation: UInt64 = 0
    /// The 16-bit copies of f32 operands the last converting op left in the GEMM workspaces, and that op.
    /// The next op may reuse them (its operand is then unchanged: no op ran in between): `dy` is
    /// converted once for both `linearBackwardInput` and `linearBackwardWeight`.
    var conversions: [Conversion] = []
    var conversionsOperation: UInt64 = 0
    /// A graph is being captured on the stream: nothing may synchronise it.
    var recording = false
    /// Graphs were captured: a workspace that grows keeps its old buffer alive (`retired`), because a
    /// graph may write there on replay.
    var graphsRecorded = false
    var retired: [CUDABuffer] = []
    /// f32 copies of 16-bit biases by the bias's address (``CUDABackend/refreshBiasCopies(_:)``), the
    /// device table the refresh kernel reads, the biases it lists, and whether `linear` may use them now.
    var biasCopies: [UInt64: CUDABuffer] = [:]
    var biasTable: CUDABuffer?
    var biasTableSources: [UInt64] = []
    var biasCopiesActive = false

    struct Conversion {
        var source: UInt64
        var count: Int
        var dtype: DType
        var slot: Workspace
    }

    /// Device scratch of the training ops. Each is used within one op (stream order protects reuse).
    enum Workspace: Hashable {
        case gemmA, gemmB, normPartials, sumOfSquares, attentionDelta
        /// The split partials of the grouped paged attention (``GroupedAttentionKernels``), and its
        /// arrival counters (zero between launches: the last block to arrive resets its counter).
        case attentionPartials, attentionCounters
        /// The chunk partials and arrival counters of the split greedy pick (`greedy_split_f32`).
        case greedyPartials, greedyCounters
    }
}

extension CUDABackend {
    /// Operand precision of `linearBackwardWeight` (set before training; ``CUDATrainingPrecision``).
    ///
    /// How bf16-mixed training is selected: pass the model **bf16 weights** (views of the bf16 buffer
    /// that `adamW(… lowPrecisionCopy:)` keeps equal to the rounded f32 master weights) and set this to
    /// `.bf16Mixed`. `linear` and `linearBackwardInput` take their operand type from the weight tensor
    /// (bf16 weights: activations and output gradients are rounded to bf16 for the GEMM, accumulation
    /// and outputs stay f32); `linearBackwardWeight` has no weight to look at, so it follows this
    /// setting (bf16 dy and x, f32 dW accumulated in place). Norm and embedding weights are read as
    /// given and converted to f32; activations, gradients, norms, softmax and the loss are f32. Attention runs
    /// on tensor cores with bf16 q, k, v and f32 statistics and outputs (``trainingAttention``).
    public var trainingPrecision: CUDATrainingPrecision {
        get { trainingState.precision }
        set { trainingState.precision = newValue }
    }

    /// The attention kernels of bf16-mixed precision (f32 precision always runs the f32 ones); nil, the
    /// default, reads `COLOCATE_TRAINING_ATTENTION` (`f32` or `tc`, unset: `tc`) at each attention op.
    /// `.f32` keeps the f32 kernels, to compare the two.
    public var trainingAttention: CUDATrainingAttention? {
        get { trainingState.attention }
        set { trainingState.attention = newValue }
    }

    /// Whether `zeros` reuses blocks released by earlier tensors (``CUDAMemoryPool``) instead of calling
    /// `cuMemAlloc` / `cuMemFree` each time. Turn it on for training (a step allocates the same shapes
    /// every time); tensors from the pool must only be used on this backend's stream.
    public var cachesAllocations: Bool {
        get { trainingState.pool != nil }
        set {
            if newValue, trainingState.pool == nil { trainingState.pool = CUDAMemoryPool(allocator: allocator) }
            if !newValue { trainingState.pool = nil }
        }
    }

    /// The memory pool behind `zeros` when ``cachesAllocations`` is on.
    public var memoryPool: CUDAMemoryPool? { trainingState.pool }

    /// Address of training workspace `slot`, at least `bytes` long (grown by doubling, after the queued
    /// ops that may still read the old one).
    /// `zeroed`: a newly allocated buffer is zero-filled (on the stream) before use.
    func workspace(_ slot: CUDATrainingState.Workspace, bytes: Int, zeroed: Bool = false) throws -> UInt64 {
        if let buffer = trainingState.workspaces[slot], buffer.byteCount >= bytes { return buffer.deviceAddress }
        if trainingState.recording { throw ComputeError("workspace \(slot) must grow during a graph capture") }
        try stream.synchronize()
        let old = trainingState.workspaces[slot]?.byteCount ?? 0
        if trainingState.graphsRecorded, let previous = trainingState.workspaces[slot] { trainingState.retired.append(previous) }
        trainingState.workspaces[slot] = nil
        let buffer = try allocator.allocate(byteCount: max(bytes, old * 2, 1 << 16))
        trainingState.workspaces[slot] = buffer
        if zeroed {
            try CUDAError.check(driver.cuMemsetD8Async(buffer.deviceAddress, 0, buffer.byteCount, stream.handle), "cuMemsetD8Async")
        }
        return buffer.deviceAddress
    }

    /// The training GEMM, sharing the forward GEMM's cuBLASLt handle and workspace.
    var trainingGEMM: CUBLASLtTrainingGEMM {
        if let gemm = trainingState.gemm { return gemm }
        let made = CUBLASLtTrainingGEMM(base: gemm)
        trainingState.gemm = made
        return made
    }

    /// Launches a kernel with more than the default 48 KiB of dynamic shared memory (raising its limit once).
    func launchWithSharedMemory(_ name: String, grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int,
                                _ arguments: [KernelArgument]) throws(CUDAError) {
        if !trainingState.sharedMemoryConfigured.contains(name) {
            try CUDAError.check(driver.cuFuncSetAttribute(kernels.function(name), CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                                          Int32(sharedBytes)), "cuFuncSetAttribute")
            trainingState.sharedMemoryConfigured.insert(name)
        }
        try launch(name, grid: grid, block: block, sharedBytes: sharedBytes, arguments)
    }
}

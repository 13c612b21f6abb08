import CCUDA
import Foundation
import Synchronization

/// The op set on an NVIDIA GPU: GEMMs through cuBLASLt, everything else as CUDA C kernels compiled at
/// run time by NVRTC for the device (see `Kernels/`), all queued in order on one stream of the device.
///
/// Threading: every op runs on the device's thread (``CUDADevice/executor``); called from elsewhere it
/// hops there and waits. Send a whole forward pass with ``CUDADevice/run(_:)`` and the ops run inline.
/// Ops are asynchronous on the GPU: results are ready after ``synchronize()`` or ``download(_:)``.
///
/// Dtypes: activations are f32. Weights may be f32, bf16 or f16. An f32 linear layer is an f32 GEMM
/// (`CUBLAS_COMPUTE_32F`, no TF32). For bf16/f16 weights the activations are first converted to the
/// weight's dtype by a kernel, then multiplied by the weights as stored, accumulating and writing f32
/// (`A`, `B` 16-bit; `C`, `D` f32; compute f32). We chose this over converting the weights because it reads
/// the weights once in their own size (decode is bound by weight bandwidth), keeps no second copy of
/// them (weights change in place on every sync), and rounds activations exactly as a bf16 model in
/// PyTorch does. Embedding and norm weights may be any of the three; KV caches f32, bf16 or f16.
///
/// Errors: the ops of `ComputeBackend` cannot throw, so the first failure of an op (a driver error, an
/// id out of range) is kept, later ops are skipped, and ``synchronize()`` / ``download(_:)`` throw it.
/// Shape and dtype mismatches are programming errors and trap, as on the CPU.
public final class CUDABackend: ComputeBackend, @unchecked Sendable {
    public let cudaDevice: CUDADevice
    public let allocator: CUDAAllocator
    public var device: Device { cudaDevice.device }
    /// The stream every op is queued on.
    public let stream: CUDAStream

    let driver: CUDADriver
    let kernels: CUDAKernelModules
    let gemm: CUBLASLtGEMM
    /// Training's device-thread state: precision, GEMM plans, workspaces, the memory pool (`Training/`).
    let trainingState = CUDATrainingState()
    private let failure = Mutex<ComputeError?>(nil)

    // Device-thread state: scratch for small per-op host arrays (16-bit GEMM operands: `trainingState`).
    private var staging: UnsafeMutableRawPointer?
    private var stagingCapacity = 0
    private var stagingHead = 0
    private var uploadScratch: CUDABuffer?
    /// Per-op GPU timing (`COLOCATE_PROFILE_OPS=1`); device-thread state.
    var profile: CUDAOpProfile? = ProcessInfo.processInfo.environment["COLOCATE_PROFILE_OPS"] == "1" ? CUDAOpProfile() : nil

    /// Bytes of cuBLASLt workspace (Hopper kernels want 32 MiB).
    public static let gemmWorkspaceBytes = 32 << 20

    /// A backend on `device` allocating from `allocator` (its budget includes the backend's own
    /// workspace and scratch). Compiles (or loads from the cache) every kernel for the device.
    public init(device: CUDADevice, allocator: CUDAAllocator) throws {
        cudaDevice = device
        self.allocator = allocator
        driver = device.driver
        stream = try device.makeStream()
        kernels = try device.kernels()
        let workspace = try allocator.allocate(byteCount: Self.gemmWorkspaceBytes)
        gemm = try device.sync { () throws in try CUBLASLtGEMM(device: device, workspace: workspace) }
    }

    /// A backend with a budget of `memoryUtilization` of the device's memory.
    public convenience init(device: CUDADevice, memoryUtilization: Double) throws {
        try self.init(device: device, allocator: CUDAAllocator(device: device, memoryUtilization: memoryUtilization))
    }

    deinit {
        if let staging {
            let driver = driver
            cudaDevice.withContext { _ = driver.cuMemFreeHost(staging) }
        }
    }

    // MARK: Running ops

    /// Runs an op's body on the device's thread unless an earlier op failed; keeps the first failure.
    package func perform(_ op: String, _ body: () throws -> Void) {
        do {
            try cudaDevice.sync {
                if failure.withLock({ $0 != nil }) { return }
                trainingState.operation &+= 1  // dates the cached bf16 conversions of training GEMMs
                try timed(op, body)
            }
        } catch {
            fail(op, error)
        }
    }

    func fail(_ op: String, _ error: any Error) {
        failure.withLock { if $0 == nil { $0 = ComputeError("CUDA \(op) on \(device.uuid) failed: \(error)") } }
    }

    /// The first failure of an op since the backend was made, if any.
    public var firstFailure: ComputeError? { failure.withLock { $0 } }

    /// Forgets the first failure; whether there was one. Only for failures of ops that did not run on the
    /// device (a refused graph capture).
    func clearFailure() -> Bool {
        failure.withLock { failure in
            defer { failure = nil }
            return failure != nil
        }
    }

    /// Waits for every queued op; throws the first failure of an op, or of the GPU.
    public func synchronize() throws {
        try cudaDevice.sync {
            if let failure = failure.withLock({ $0 }) { throw failure }
            try stream.synchronize()
        }
    }

    func launch(_ name: String, grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int = 0, _ arguments: [KernelArgument]) throws(CUDAError) {
        try driver.launch(kernels.function(name), grid: grid, block: block, sharedBytes: sharedBytes, stream: stream.handle, arguments)
    }

    /// Blocks for a grid-stride loop over `n` elements.
    static func blocks(_ n: Int, threads: Int = 256) -> Int { max(1, min((n + threads - 1) / threads, 1 << 20)) }

    /// Device address of a tensor's first element, checking it lives on this device and is contiguous.
    package func address(_ t: Tensor, _ role: String = "tensor") -> UInt64 {
        guard let storage = t.deviceStorage else { preconditionFailure("\(role) \(t) is not on \(device)") }
        precondition(storage.device.uuid == device.uuid, "\(role) is on \(storage.device), not on \(device)")
        precondition(t.isContiguous, "\(role) \(t) must be contiguous")
        return storage.deviceAddress + UInt64(t.byteOffset)
    }

    static func kernelSuffix(_ dtype: DType) -> String {
        switch dtype {
        case .f32: "f32"
        case .bf16: "bf16"
        case .f16: "f16"
        default: preconditionFailure("no CUDA kernel for \(dtype) (f32, bf16 and f16 are supported)")
        }
    }

    // MARK: Scratch

    /// Copies `values` to device scratch through pinned memory, on the stream, and returns the scratch
    /// address. Valid for the kernels queued before the next upload (stream order protects it).
    func upload<T: BitwiseCopyable>(_ values: [T]) throws -> UInt64 {
        let bytes = max(values.count * MemoryLayout<T>.stride, 4)
        if uploadScratch.map({ $0.byteCount < bytes }) ?? true {
            try stream.synchronize()  // the old scratch may still be read by queued kernels
            let old = uploadScratch?.byteCount ?? 0
            uploadScratch = nil
            uploadScratch = try allocator.allocate(byteCount: max(bytes, 64 << 10, old * 2))
        }
        let source = try stage(values, bytes: bytes)
        let destination = uploadScratch!.deviceAddress
        try CUDAError.check(driver.cuMemcpyHtoDAsync(destination, source, bytes, stream.handle), "cuMemcpyHtoDAsync_v2")
        return destination
    }

    /// Copies `values` into the pinned staging ring; when it wraps, waits for the copies still reading it.
    func stage<T: BitwiseCopyable>(_ values: [T], bytes: Int) throws -> UnsafeRawPointer {
        let rounded = (bytes + 255) & ~255
        if stagingHead + rounded > stagingCapacity {
            try stream.synchronize()
            stagingHead = 0
            if rounded > stagingCapacity {
                if let old = staging { _ = driver.cuMemFreeHost(old) }
                staging = nil
                stagingCapacity = 0
                let capacity = max(rounded, 4 << 20)
                var pointer: UnsafeMutableRawPointer?
                try CUDAError.check(driver.cuMemAllocHost(&pointer, capacity), "cuMemAllocHost_v2")
                staging = pointer
                stagingCapacity = capacity
            }
        }
        let destination = staging! + stagingHead
        values.withUnsafeBytes { destination.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        stagingHead += rounded
        return UnsafeRawPointer(destination)
    }

    // MARK: Host ⇄ device

    /// A device copy of a contiguous host tensor.
    public func upload(_ host: Tensor) throws -> Tensor { try upload(host, as: nil) }

    /// A device copy of a host tensor, converted to `dtype` on the host first when given.
    public func upload(_ host: Tensor, as dtype: DType?) throws -> Tensor {
        let source = dtype.map { $0 == host.dtype ? host : (try? host.converted(to: $0)) ?? host } ?? host
        precondition(source.memory != nil && source.isContiguous, "upload of \(host): a contiguous host tensor is needed")
        let buffer = try trainingState.pool.map { try $0.allocate(byteCount: source.byteCount) } ?? allocator.allocate(byteCount: source.byteCount)
        let out = buffer.tensor(dtype: source.dtype, shape: source.shape)
        try write(source, into: out)
        return out
    }

    /// Copies a host tensor into a device tensor of the same element count, after the queued ops,
    /// converting the dtype on the host first when the two differ.
    public func upload(_ host: Tensor, into destination: Tensor) throws {
        let source = host.dtype == destination.dtype ? host : try host.converted(to: destination.dtype)
        try write(source, into: destination)
    }

    /// Runs `body` on the device's thread, where every op runs inline (no hop per op); throws what
    /// `body` throws or, after it, the first failure of an op.
    public func perform<T>(_ body: () throws -> T) throws -> T {
        try cudaDevice.sync {
            let result = try body()
            if let failure = failure.withLock({ $0 }) { throw failure }
            return result
        }
    }

    /// Copies a host tensor into a device tensor of the same dtype and element count, after the queued ops.
    public func write(_ host: Tensor, into deviceTensor: Tensor) throws {
        precondition(host.dtype == deviceTensor.dtype && host.count == deviceTensor.count, "write of \(host) into \(deviceTensor)")
        precondition(host.memory != nil && host.isContiguous, "write from \(host): a contiguous host tensor is needed")
        let destination = address(deviceTensor)
        try cudaDevice.sync {
            if let failure = failure.withLock({ $0 }) { throw failure }
            try stream.synchronize()
            trainingState.operation &+= 1
            try CUDAError.check(driver.cuMemcpyHtoD(destination, host.rawPointer, host.byteCount), "cuMemcpyHtoD_v2")
        }
    }

    /// A host copy of a device tensor, after the queued ops; throws the first failure of an op.
    public func download(_ deviceTensor: Tensor) throws -> Tensor {
        let source = address(deviceTensor)
        let out = try Tensor.zeros(deviceTensor.shape, dtype: deviceTensor.dtype)
        try cudaDevice.sync {
            if let failure = failure.withLock({ $0 }) { throw failure }
            try stream.synchronize()
            try CUDAError.check(driver.cuMemcpyDtoH(out.rawPointer, source, out.byteCount), "cuMemcpyDtoH_v2")
        }
        return out
    }

    /// Elements of a device tensor as `Float` (any float dtype), after the queued ops.
    public func floats(_ deviceTensor: Tensor) throws -> [Float] { try download(deviceTensor).floats() }
}

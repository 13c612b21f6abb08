import Compute
import Foundation
import Models
import WeightSync

/// What one optimizer step did, as one trainer saw it.
public struct StepStats: Sendable, Codable, Equatable {
    /// Optimizer steps done, this one included (the first step is 1).
    public var step: Int
    /// The sum of this trainer's objective losses. Objectives normalised by the global token count
    /// make the sum over data-parallel ranks the step's mean loss (``TrainerGroup`` adds them up).
    public var loss: Double
    /// The global gradient norm (after the all-reduce), before clipping.
    public var gradNorm: Double
    /// The learning rate this step used.
    public var learningRate: Float
    /// Tokens this trainer ran through the model (every position of every micro-batch).
    public var tokens: Int
}

/// All-reduce (sum) of a flat f32 tensor in place across the data-parallel ranks.
public typealias GradientAllReduce = (Tensor) throws -> Void

/// Everything one trainer process holds for training: the f32 master weights (``TrainerWeights``, in
/// their exportable flat buffer), a sibling flat gradient buffer of the same layout, the AdamW state,
/// the ``TrainingModel`` viewing both, and the data-parallel all-reduce when there are several ranks.
///
/// A step is: zero the gradients → forward/backward each micro-batch (gradients accumulate) →
/// all-reduce the flat gradient buffer once (sum) → clip by the global norm → AdamW → version += 1.
/// Ranks sum their gradients, so objectives must be normalised by the step's **global** token count
/// (every micro-batch of every rank): then accumulation and data parallelism compute what one big
/// batch would.
public final class TrainerSession: @unchecked Sendable {
    public let weights: TrainerWeights
    public let ops: any TrainingOps
    public let model: TrainingModel
    public let optimizer: AdamW
    /// The flat gradient buffer (f32, the weights' layout) and each parameter's view of it.
    public let gradients: Tensor
    public let gradientViews: [String: Tensor]
    /// The weights as one flat f32 tensor.
    public let flatWeights: Tensor
    public var schedule: LearningRateSchedule
    /// Clip the global gradient norm to this (nil: no clipping).
    public var maxGradNorm: Float?
    public var allReduce: GradientAllReduce?
    /// bf16-mixed precision: the bf16 copy of the weights the model computes with (flat, the layout's
    /// element order), which AdamW rewrites from the f32 master weights on every update. Nil in f32.
    public let lowPrecisionWeights: Tensor?
    /// Whether the last step did not finish (its gradients may be NaN or inf).
    private var gradientsMayHoldNonFinite = false

    /// `mixedPrecision` selects the mixed recipe (GPUs only): f32 master weights and optimizer, bf16
    /// matmul operands with f32 accumulation; norms, softmax and the loss in f32.
    public init(weights: TrainerWeights, hyper: AdamWHyperparameters, schedule: LearningRateSchedule,
                maxGradNorm: Float? = 1.0, recomputeActivations: Bool = false, allReduce: GradientAllReduce? = nil,
                mixedPrecision: Bool = false) throws {
        let layout = weights.buffer.layout
        guard layout.entries.allSatisfy({ $0.dtype == .f32 }) else {
            throw TrainingError("training needs f32 master weights; load the model with dtype f32")
        }
        let ops = try Self.trainingOps(for: weights)
        self.weights = weights
        self.ops = ops
        self.schedule = schedule
        self.maxGradNorm = maxGradNorm
        self.allReduce = allReduce
        let flat = Self.flatView(of: weights.buffer)
        flatWeights = flat
        gradients = try ops.zeros([layout.totalBytes / 4], dtype: .f32)
        var views: [String: Tensor] = [:]
        for e in layout.entries { views[e.name] = Self.view(gradients, byteOffset: e.offset, shape: e.shape) }
        gradientViews = views
        optimizer = try AdamW(layout: layout, hyper: hyper, ops: ops)
        var modelWeights = weights.buffer.tensors
        if mixedPrecision {
            guard weights.cuda != nil else { throw TrainingError("bf16-mixed training runs on GPUs; the CPU trains in f32") }
            try Self.selectMixedPrecision(ops)
            // The bf16 copy starts as the rounded master weights (upload converts f32 to bf16).
            let copy = try ops.zeros([layout.totalBytes / 4], dtype: .bf16)
            try ops.perform { try ops.upload(try ops.download(flat), into: copy) }
            for e in layout.entries {
                modelWeights[e.name] = Tensor(deviceStorage: copy.deviceStorage!, byteOffset: copy.byteOffset + e.offset / 2,
                                              dtype: .bf16, shape: e.shape)
            }
            lowPrecisionWeights = copy
        } else {
            lowPrecisionWeights = nil
        }
        model = try TrainingModel(config: weights.config, weights: modelWeights, gradients: views,
                                  backend: ops, recomputeActivations: recomputeActivations)
    }

    /// One optimizer step over `microBatches` (gradient accumulation when there are several).
    /// Throws, before changing any weight, when the loss or the gradient norm is not finite.
    public func step(microBatches: [(TokenBatch, any TokenObjective)]) throws -> StepStats {
        let number = optimizer.step + 1
        try zeroGradients()
        var loss = 0.0, tokens = 0
        for (batch, objective) in microBatches {
            loss += try model.forwardBackward(batch, objective: objective)
            tokens += batch.ids.count
        }
        // Every rank reaches the all-reduce even when its own loss diverged: a rank that threw here
        // would leave its peers waiting. A non-finite local loss makes the summed gradients
        // non-finite on every rank, so all of them stop below.
        if let allReduce { try ops.perform { try allReduce(gradients) } }
        let norm = try ops.perform { try GradientClipping.clip(gradients, maxNorm: maxGradNorm, ops: ops) }
        guard loss.isFinite else {
            throw TrainingError("step \(number): the loss became \(loss.isNaN ? "NaN" : "infinite"); training stopped before applying the step")
        }
        guard norm.isFinite else {
            throw TrainingError("step \(number): the gradient norm became \(norm.isNaN ? "NaN" : "infinite"); training stopped before applying the step")
        }
        let lr = schedule.rate(atStep: optimizer.step)
        try ops.perform { optimizer.update(params: flatWeights, grads: gradients, learningRate: lr, lowPrecisionCopy: lowPrecisionWeights) }
        weights.buffer.version += 1
        gradientsMayHoldNonFinite = false
        return StepStats(step: optimizer.step, loss: loss, gradNorm: norm, learningRate: lr, tokens: tokens)
    }

    /// Per-token log-probabilities under the current weights (flat [batch·sequence], t == 0 entries 0).
    public func logProbs(_ batch: TokenBatch) throws -> [Float] {
        try model.logProbs(batch, entropy: false).logProbs
    }

    func zeroGradients() throws {
        if gradients.memory != nil {
            memset(gradients.rawPointer, 0, gradients.byteCount)
        } else if gradientsMayHoldNonFinite {
            // After a failed step the buffer may hold NaN, which 0·NaN would keep: write zeros.
            try ops.perform { try ops.upload(try Tensor.zeros(gradients.shape), into: gradients) }
        } else {
            // On a GPU: scaling by 0 on the backend's queue, no host transfer.
            try ops.perform { ops.scale(gradients, by: 0, into: gradients) }
        }
        gradientsMayHoldNonFinite = true
    }

    /// Switches the backend's weight-gradient GEMMs to bf16 operands (`linear` and its input gradient
    /// follow the bf16 weight tensors by themselves). The CUDA training backend is merged on another
    /// branch; when it is, this becomes
    /// `guard let cuda = ops as? CUDABackend else { throw … }; cuda.trainingPrecision = .bf16Mixed`.
    static func selectMixedPrecision(_ ops: any TrainingOps) throws {
        throw TrainingError("bf16-mixed training needs the CUDA training backend, which this build lacks; use --dtype f32")
    }

    /// The backend that runs training on the weights' device: the CPU backend on a (virtual) CPU
    /// device, the weights' CUDA backend on a GPU.
    static func trainingOps(for weights: TrainerWeights) throws -> any TrainingOps {
        let backend: any ComputeBackend = weights.cuda ?? CPUBackend(device: weights.buffer.device)
        guard let ops = backend as Any as? any TrainingOps else {
            throw TrainingError("this build's \(weights.buffer.device.kind) backend has no training ops")
        }
        return ops
    }

    /// The whole flat buffer as one f32 tensor (the padding between parameters included, always 0).
    static func flatView(of buffer: any ExportableWeightBuffer) -> Tensor {
        let count = buffer.layout.totalBytes / 4
        if let host = buffer as? SharedWeightBuffer {
            return Tensor(memory: host.memory, byteOffset: 0, dtype: .f32, shape: [count])
        }
        let gpu = buffer as! CUDAWeightBuffer
        return gpu.buffer.tensor(dtype: .f32, shape: [count], byteOffset: 0)
    }

    /// A contiguous f32 view of `flat` at `byteOffset`.
    static func view(_ flat: Tensor, byteOffset: Int, shape: [Int]) -> Tensor {
        if let memory = flat.memory {
            return Tensor(memory: memory, byteOffset: flat.byteOffset + byteOffset, dtype: .f32, shape: shape)
        }
        return Tensor(deviceStorage: flat.deviceStorage!, byteOffset: flat.byteOffset + byteOffset, dtype: .f32, shape: shape)
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension TrainerSession {
    /// Writes the weights and the optimizer state into the checkpoint `directory` (see ``Checkpoint``).
    public func saveCheckpoint(to directory: String, modelDirectory: String, state: TrainerState) throws {
        let host = try ops.perform { (try ops.download(flatWeights), try ops.download(optimizer.m), try ops.download(optimizer.v)) }
        var state = state
        state.step = optimizer.step
        try Checkpoint.save(to: directory, modelDirectory: modelDirectory, layout: weights.buffer.layout,
                            weights: host.0, m: host.1, v: host.2, state: state)
    }

    /// Restores the optimizer's moments and step count from the checkpoint `directory`, whose weights
    /// these are (``TrainerWeights`` loaded from it). Checks that it belongs to this model.
    public func restoreOptimizer(from directory: String) throws {
        let state = try Checkpoint.state(of: directory, for: weights.config)
        let (m, v) = try Checkpoint.loadMoments(from: directory, layout: weights.buffer.layout)
        try ops.perform { try optimizer.restore(step: state.step, m: m, v: v) }
    }
}

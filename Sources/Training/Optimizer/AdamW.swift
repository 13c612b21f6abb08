import Compute
import WeightSync

/// `torch.optim.AdamW` (with bias correction) over a trainer's flat f32 weight buffer. The moments m
/// and v are sibling flat buffers of the same ``WeightLayout`` on the same device, so one fused
/// `TrainingOps.adamW` call updates every parameter; the padding between parameters stays zero (its
/// gradient is zero, and it lies outside every decay range).
public final class AdamW: @unchecked Sendable {
    /// The settings of the next step; the schedule overwrites `learningRate` before each step.
    public var hyper: AdamWHyperparameters
    /// First and second moments, flat f32 [elements] like the weights.
    public let m: Tensor
    public let v: Tensor
    /// Updates applied so far (torch's `state["step"]`); the next update is number `step + 1`.
    public private(set) var step: Int = 0
    /// Element ranges of the flat buffer that take weight decay: parameters of ≥ 2 dimensions.
    public let decayRanges: [Range<Int>]
    public let layout: WeightLayout
    private let ops: any TrainingOps

    /// Zeroed moments for `layout` (every entry f32) on `ops`' device.
    public init(layout: WeightLayout, hyper: AdamWHyperparameters, ops: any TrainingOps) throws {
        guard layout.entries.allSatisfy({ $0.dtype == .f32 }) else {
            throw TrainingError("AdamW needs f32 master weights; the layout holds \(Set(layout.entries.map(\.dtype.rawValue)).sorted().joined(separator: ", "))")
        }
        self.layout = layout
        self.hyper = hyper
        self.ops = ops
        let count = layout.totalBytes / 4
        m = try ops.zeros([count], dtype: .f32)
        v = try ops.zeros([count], dtype: .f32)
        decayRanges = Self.decayRanges(of: layout)
    }

    /// The f32 element ranges of the parameters with ≥ 2 dimensions (matrices and embeddings), as
    /// nanoGPT and llm.c choose them: biases and norm gains take no weight decay.
    public static func decayRanges(of layout: WeightLayout) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        for e in layout.entries where e.shape.count >= 2 {
            let start = e.offset / e.dtype.byteSize
            let r = start..<(start + e.count)
            // Neighbours merge: fewer ranges for the kernel to walk.
            if let last = ranges.last, last.upperBound == r.lowerBound {
                ranges[ranges.count - 1] = last.lowerBound..<r.upperBound
            } else {
                ranges.append(r)
            }
        }
        return ranges
    }

    /// One update of `params` by `grads` (flat f32, this layout) at `learningRate`; with
    /// `lowPrecisionCopy` (bf16, flat), the updated weights are also written there, rounded.
    public func update(params: Tensor, grads: Tensor, learningRate: Float, lowPrecisionCopy: Tensor? = nil) {
        precondition(params.count == m.count && grads.count == m.count, "AdamW over \(params.count) and \(grads.count) elements, state of \(m.count)")
        step += 1
        var h = hyper
        h.learningRate = learningRate
        ops.adamW(params: params, grads: grads, m: m, v: v, step: step, hyper: h, decayRanges: decayRanges, lowPrecisionCopy: lowPrecisionCopy)
    }

    /// Restores a saved state: the step count and the moments (host tensors of `m`'s element count).
    public func restore(step: Int, m hostM: Tensor, v hostV: Tensor) throws {
        guard hostM.count == m.count, hostV.count == v.count, hostM.dtype == .f32, hostV.dtype == .f32 else {
            throw TrainingError("the saved optimizer state holds \(hostM.count) f32 moments; this model needs \(m.count)")
        }
        try ops.upload(hostM, into: m)
        try ops.upload(hostV, into: v)
        self.step = step
    }
}

/// The ops training adds to the op set: the backward of every forward op the three architectures use,
/// causal attention over whole sequences (no KV cache), log-probabilities of chosen tokens, reductions
/// for gradient clipping and the fused AdamW update. One implementation per device kind, like
/// `ComputeBackend`; the training model is written once against both.
///
/// Conventions, as in `ComputeBackend`: activations and gradients are f32 and contiguous; `N` is the
/// number of tokens of a step, the batch's sequences laid end to end (`batch` sequences of `sequence`
/// tokens each, so `N = batch · sequence`); weights use Hugging Face layouts and may be f32, bf16 or
/// f16. Gradients of weights are always f32 and are **accumulated into** (`+=`), so that several
/// micro-batches (gradient accumulation) and tied embeddings sum without extra buffers; the caller
/// zeroes them before a step. Gradients of activations are overwritten unless `accumulate` says so.
public protocol TrainingOps: ComputeBackend {
    // MARK: Linear layers

    /// `dx = dy · W` (or `dx += …` when `accumulate`). dy: [N, O]; weight: [O, K]; dx: [N, K].
    func linearBackwardInput(_ dy: Tensor, weight: Tensor, into dx: Tensor, accumulate: Bool)

    /// `dW += dyᵀ · x` and, when given, `db += Σ_n dy[n, :]`. dy: [N, O]; x: [N, K]; dW: [O, K] f32; db: [O] f32.
    func linearBackwardWeight(_ dy: Tensor, input x: Tensor, weightGradient dW: Tensor, biasGradient db: Tensor?)

    // MARK: Embeddings

    /// `dTable[ids[n], :] += dy[n, :]`. dy: [N, H]; dTable: [V, H] f32. Ids repeat; sums must not race.
    func embeddingBackward(ids: [Int32], _ dy: Tensor, into dTable: Tensor)

    // MARK: Norms (statistics are recomputed from x)

    /// Backward of `layerNorm(x, weight, bias, eps)`: `dx = …` (overwritten), `dWeight += Σ dy·x̂`,
    /// `dBias += Σ dy`. x, dy, dx: [N, H]; dWeight, dBias: [H] f32.
    func layerNormBackward(_ x: Tensor, weight: Tensor, eps: Float, outputGradient dy: Tensor,
                           into dx: Tensor, weightGradient dWeight: Tensor, biasGradient dBias: Tensor)

    /// Backward of `rmsNorm(x, weight, eps)`: `dx = …` (overwritten), `dWeight += Σ dy·x/rms`.
    func rmsNormBackward(_ x: Tensor, weight: Tensor, eps: Float, outputGradient dy: Tensor,
                         into dx: Tensor, weightGradient dWeight: Tensor)

    // MARK: Elementwise

    /// `dx = dy · act'(x)` where x is the activation's input. dx may alias dy.
    func activationBackward(_ kind: Activation, input x: Tensor, outputGradient dy: Tensor, into dx: Tensor)

    /// Backward of `y = silu(gate) · up`: `dGate = dy · up · silu'(gate)`, `dUp = dy · silu(gate)`
    /// (both overwritten; they may not alias gate, up or dy).
    func swiGLUBackward(gate: Tensor, up: Tensor, outputGradient dy: Tensor, gateGradient dGate: Tensor, upGradient dUp: Tensor)

    /// `y = x · factor`, elementwise; y may alias x.
    func scale(_ x: Tensor, by factor: Float, into y: Tensor)

    /// Σ x², accumulated in f64 where the device allows, returned to the host (waits for the queue).
    func sumOfSquares(_ x: Tensor) throws -> Double

    // MARK: Attention over whole sequences

    /// Causal self-attention of `batch` sequences of `sequence` tokens each (position i attends to
    /// 0...i of its own sequence), grouped-query: query head h reads kv head `h / (heads / kvHeads)`.
    /// q, out: [N, heads, headDim]; k, v: [N, kvHeads, headDim]; logSumExp: [N, heads] f32, the
    /// log-sum-exp of each softmax row (scaled scores), saved for the backward.
    func causalAttention(q: Tensor, k: Tensor, v: Tensor, batch: Int, sequence: Int, scale: Float,
                         into out: Tensor, logSumExp: Tensor)

    /// Backward of `causalAttention`, from its inputs, output and saved `logSumExp`. dq, dk, dv are
    /// overwritten; dk and dv sum over the query heads that share each kv head.
    func causalAttentionBackward(q: Tensor, k: Tensor, v: Tensor, out: Tensor, logSumExp: Tensor,
                                 outputGradient dOut: Tensor, batch: Int, sequence: Int, scale: Float,
                                 queryGradient dq: Tensor, keyGradient dk: Tensor, valueGradient dv: Tensor)

    // MARK: Log-probabilities of chosen tokens (the lm_head's loss, chunked by the caller)

    /// For each row n: `logProb[n] = log softmax(logits[n, :])[targets[n]]` and, when given,
    /// `entropy[n] = -Σ_v p·log p`. logits: [R, V] f32; logProb, entropy: [R] f32.
    func tokenLogProbs(_ logits: Tensor, targets: [Int32], into logProb: Tensor, entropy: Tensor?)

    /// Backward of `tokenLogProbs` with respect to the logits, in place: given `dLogProb[n]` =
    /// ∂loss/∂logProb[n], overwrites `logits` with `dLogProb[n] · (onehot(targets[n]) − softmax(logits[n, :]))`.
    /// A row with `dLogProb[n] == 0` becomes zeros. logits: [R, V] f32; dLogProb: [R] f32 (device tensor).
    func tokenLogProbsBackward(_ logits: Tensor, targets: [Int32], logProbGradient dLogProb: Tensor)

    // MARK: Optimizer

    /// One fused AdamW step (`torch.optim.AdamW` with bias correction) over flat f32 buffers of the same
    /// layout: `params`, `grads`, `m`, `v` are [count]. Weight decay `lr · weightDecay · p` applies to the
    /// elements inside `decayRanges` only (parameters of ≥ 2 dimensions). `step` counts from 1. When
    /// `lowPrecisionCopy` is given (bf16 [count]), the updated params are also written there, converted.
    func adamW(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, step: Int, hyper: AdamWHyperparameters,
               decayRanges: [Range<Int>], lowPrecisionCopy: Tensor?)
}

extension TrainingOps {
    /// The backward of `rotary(x, positions:, embedding:)`, in place: a rotation's transpose is the
    /// rotation by the opposite angle, and negating a position negates f32(pos)·invFreq exactly, so this
    /// is the forward's rotation transposed to the bit (the attention scaling is symmetric).
    public func rotaryBackward(_ dx: Tensor, positions: [Int32], embedding: RotaryEmbedding) {
        rotary(dx, positions: positions.map { -$0 }, embedding: embedding)
    }
}

/// `torch.optim.AdamW`'s settings for one step.
public struct AdamWHyperparameters: Sendable, Codable, Equatable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float

    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }
}

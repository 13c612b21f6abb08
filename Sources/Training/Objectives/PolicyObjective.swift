import Foundation

/// Counts that the policy loss gathers over the tokens it sees; ranks' statistics add up.
public struct PolicyStatistics: Sendable, Codable, Equatable {
    /// Completion tokens seen (those with a non-zero weight).
    public var tokens = 0
    /// Tokens whose ratio fell below 1 − ε_low with a negative advantage (TRL's `clip_ratio/low_mean`).
    public var clippedLow = 0
    /// Tokens whose ratio rose above 1 + ε_high with a positive advantage (TRL's `clip_ratio/high_mean`).
    public var clippedHigh = 0
    /// Sum over tokens of the k3 estimate of KL(policy ‖ reference) (0 without a reference).
    public var klSum = 0.0
    /// Sum over tokens of the truncated importance weight applied (its mean is 1 when engine = trainer).
    public var importanceWeightSum = 0.0
    /// Sum over tokens of the policy's predictive entropy (when the model computed it).
    public var entropySum = 0.0

    public init() {}

    public static func + (a: Self, b: Self) -> Self {
        var s = a
        s.tokens += b.tokens
        s.clippedLow += b.clippedLow
        s.clippedHigh += b.clippedHigh
        s.klSum += b.klSum
        s.importanceWeightSum += b.importanceWeightSum
        s.entropySum += b.entropySum
        return s
    }

    public var clipFractionLow: Double { tokens == 0 ? 0 : Double(clippedLow) / Double(tokens) }
    public var clipFractionHigh: Double { tokens == 0 ? 0 : Double(clippedHigh) / Double(tokens) }
    public var meanKL: Double { tokens == 0 ? 0 : klSum / Double(tokens) }
    public var meanEntropy: Double { tokens == 0 ? 0 : entropySum / Double(tokens) }
}

/// The per-token inputs of the policy loss for one micro-batch, flat [batch * sequence] like the
/// `TokenBatch` they belong to (entry b * sequence + t concerns token t of sequence b).
public struct PolicyInputs: Sendable, Codable, Equatable {
    /// Each token's share of the loss: 0 for prompt and padding tokens; for completion tokens the
    /// `LossAggregation` weight, normalised by GLOBAL counts.
    public var weights: [Float]
    /// The advantage of the token's sequence.
    public var advantages: [Float]
    /// Log-probs of the policy that sampled (the trainer's, before this batch's first update). Nil
    /// when this is the batch's only update: old = the current log-probs, detached (ratio 1), as TRL
    /// does with one iteration, which saves a forward pass.
    public var oldLogProbs: [Float]?
    /// Log-probs of the frozen reference model, when the loss has a KL term.
    public var referenceLogProbs: [Float]?
    /// Log-probs the engine reported for the sampled tokens; with `importanceCap`, the loss is weighted
    /// by min(exp(old − engine), cap) (truncated importance sampling, TRL's vLLM correction).
    public var engineLogProbs: [Float]?
    public var importanceCap: Float?

    public init(weights: [Float], advantages: [Float], oldLogProbs: [Float]?, referenceLogProbs: [Float]? = nil,
                engineLogProbs: [Float]? = nil, importanceCap: Float? = nil) {
        self.weights = weights
        self.advantages = advantages
        self.oldLogProbs = oldLogProbs
        self.referenceLogProbs = referenceLogProbs
        self.engineLogProbs = engineLogProbs
        self.importanceCap = importanceCap
    }
}

/// The clipped policy-gradient loss of GRPO / PPO, token by token, as TRL's `GRPOTrainer` computes it:
///
///     ratio = exp(lp − old_lp)
///     loss_t = −min(ratio · A, clamp(ratio, 1 − ε_low, 1 + ε_high) · A) · w_is + β · k3
///     k3 = exp(ref − lp) − (ref − lp) − 1
///     loss = Σ_t weight_t · loss_t
///
/// The weights carry the aggregation (`LossAggregation`) and its global normalisation.
public final class PolicyObjective: TokenObjective, @unchecked Sendable {
    public let inputs: PolicyInputs
    public let clipLow: Float
    public let clipHigh: Float
    public let klCoefficient: Float
    /// What the evaluations so far have counted.
    public private(set) var statistics = PolicyStatistics()

    /// Whether to ask the model for the entropy (for the `entropy` metric; one more pass over the logits).
    public let wantsEntropy: Bool

    public init(inputs: PolicyInputs, clipLow: Float = 0.2, clipHigh: Float = 0.2, klCoefficient: Float = 0, wantsEntropy: Bool = false) {
        self.inputs = inputs
        self.clipLow = clipLow
        self.clipHigh = clipHigh
        self.klCoefficient = klCoefficient
        self.wantsEntropy = wantsEntropy
    }

    public func evaluate(tokens: [Int], logProbs: [Float], entropy: [Float]?) throws -> (loss: Double, logProbGradient: [Float]) {
        var gradient = [Float](repeating: 0, count: tokens.count)
        var loss = 0.0
        let lo = 1 - clipLow, hi = 1 + clipHigh
        for (k, i) in tokens.enumerated() {
            let w = inputs.weights[i]
            if w == 0 { continue }
            let lp = logProbs[k], a = inputs.advantages[i]
            let old = inputs.oldLogProbs?[i] ?? lp
            let ratio = exp(lp - old)
            let clipped = min(max(ratio, lo), hi)
            let unclippedTerm = ratio * a, clippedTerm = clipped * a
            // −min(unclipped, clipped): the unclipped branch's gradient is −A·ratio; the clipped branch
            // is flat outside [lo, hi] (and equals the unclipped one inside).
            var tokenLoss: Float, tokenGrad: Float
            if unclippedTerm <= clippedTerm {
                tokenLoss = -unclippedTerm
                tokenGrad = -a * ratio
            } else {
                tokenLoss = -clippedTerm
                tokenGrad = 0
            }
            if let cap = inputs.importanceCap, let engine = inputs.engineLogProbs?[i] {
                let isw = min(exp(old - engine), cap)
                tokenLoss *= isw
                tokenGrad *= isw
                statistics.importanceWeightSum += Double(isw)
            } else {
                statistics.importanceWeightSum += 1
            }
            if let ref = inputs.referenceLogProbs?[i] {
                let d = ref - lp
                let k3 = exp(d) - d - 1
                statistics.klSum += Double(k3)
                if klCoefficient != 0 {
                    tokenLoss += klCoefficient * k3
                    tokenGrad += klCoefficient * (1 - exp(d))
                }
            }
            if let entropy { statistics.entropySum += Double(entropy[k]) }
            statistics.tokens += 1
            if ratio < lo && a < 0 { statistics.clippedLow += 1 }
            if ratio > hi && a > 0 { statistics.clippedHigh += 1 }
            loss += Double(w * tokenLoss)
            gradient[k] = w * tokenGrad
        }
        return (loss, gradient)
    }
}

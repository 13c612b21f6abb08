/// A loss defined on the log-probabilities of the batch's tokens. The model computes log-probs chunk by
/// chunk (the f32 logits of a whole batch are never alive at once) and asks the objective for each
/// chunk's gradient. Objectives may keep statistics across calls (hence a class).
public protocol TokenObjective: AnyObject {
    /// `tokens[i]` is a flat index (b * sequence + t, t >= 1) and `logProbs[i]` its log-probability under
    /// the model (`entropy[i]` the entropy of that predictive distribution, when `wantsEntropy`).
    /// Returns this chunk's loss contribution and ∂loss/∂logProbs[i]. Tokens whose gradient is 0 are skipped cheaply.
    func evaluate(tokens: [Int], logProbs: [Float], entropy: [Float]?) throws -> (loss: Double, logProbGradient: [Float])
    /// Whether `evaluate` needs the entropy (costs one more pass over the logits).
    var wantsEntropy: Bool { get }
}

/// Weighted next-token cross-entropy: `loss = Σ_i weights[i] · (−log p(token i))` over the tokens of
/// the batch, so ∂loss/∂logProb[i] = −weights[i].
///
/// With weight 1/count for every t >= 1 (`mean(batch:)`) it is the mean next-token cross-entropy that
/// transformers computes with `labels=input_ids`. A loss mask trains only some tokens (weight 0 for
/// the others); dividing by a *global* token count instead of the micro-batch's makes data-parallel
/// ranks and accumulated micro-batches sum to the mean over the whole step.
public final class CrossEntropyObjective: TokenObjective {
    /// Flat [batch * sequence].
    public let weights: [Float]

    public init(weights: [Float]) {
        self.weights = weights
    }

    /// transformers' `labels=input_ids` loss: weight 1/(batch·(sequence−1)) for every t >= 1.
    public static func mean(batch: TokenBatch) -> CrossEntropyObjective {
        let count = batch.batch * max(batch.sequence - 1, 0)
        var weights = [Float](repeating: count > 0 ? 1 / Float(count) : 0, count: batch.count)
        for b in 0..<batch.batch where batch.sequence > 0 { weights[b * batch.sequence] = 0 }
        return CrossEntropyObjective(weights: weights)
    }

    public var wantsEntropy: Bool { false }

    public func evaluate(tokens: [Int], logProbs: [Float], entropy: [Float]?) throws -> (loss: Double, logProbGradient: [Float]) {
        precondition(tokens.count == logProbs.count, "\(tokens.count) tokens with \(logProbs.count) log-probs")
        var loss = 0.0
        var gradient = [Float](repeating: 0, count: tokens.count)
        for (i, t) in tokens.enumerated() {
            let w = weights[t]
            if w == 0 { continue }
            loss -= Double(w) * Double(logProbs[i])
            gradient[i] = -w
        }
        return (loss, gradient)
    }
}

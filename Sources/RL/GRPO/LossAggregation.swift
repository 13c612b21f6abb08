/// How per-token losses of a batch become one number (and hence how much each token weighs).
public enum LossAggregation: String, Sendable, Codable, CaseIterable {
    /// Sum over every completion token of the batch / their count (DAPO, TRL's default "dapo"/"bnpo").
    case tokenMean = "token-mean"
    /// Each sequence's mean over its tokens, then the mean over sequences (the original GRPO).
    case seqMeanTokenMean = "seq-mean-token-mean"
    /// Each sequence's token sum / the maximum completion length, then the mean over sequences (Dr. GRPO).
    case seqMeanTokenSumNorm = "seq-mean-token-sum-norm"

    /// The weight of each token of a sequence of `length` completion tokens, in a batch of `sequences`
    /// sequences and `tokens` completion tokens in all. Counts are GLOBAL (over every data-parallel rank
    /// of the update), so ranks that sum their gradients get the gradient of the whole batch's loss.
    public func tokenWeight(length: Int, sequences: Int, tokens: Int, maxTokens: Int) -> Float {
        switch self {
        case .tokenMean: return 1 / Float(max(tokens, 1))
        case .seqMeanTokenMean: return 1 / (Float(max(length, 1)) * Float(max(sequences, 1)))
        case .seqMeanTokenSumNorm: return 1 / (Float(max(maxTokens, 1)) * Float(max(sequences, 1)))
        }
    }
}

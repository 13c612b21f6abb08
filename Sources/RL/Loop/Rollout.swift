import Training

/// One sampled completion of one prompt, with what the loss needs of it.
public struct Rollout: Sendable, Equatable {
    public var group: Int
    public var promptIds: [Int32]
    /// The generated ids, the end-of-sequence token included when the engine produced it.
    public var completionIds: [Int32]
    /// The engine's log-prob of each completion token.
    public var engineLogProbs: [Float]
    /// Whether it ran into `maxTokens` without an end.
    public var truncated: Bool
    public var text: String
    public var reward: Double = 0
    public var advantage: Double = 0
}

/// Turns rollouts into trainer micro-batches: sequences laid end to end as a ``TokenBatch`` padded to
/// the longest, and the per-token inputs of the policy loss (zero weight on prompt and padding tokens).
enum RolloutBatcher {
    /// Per-token values of a rollout's completion tokens (old or reference log-probs), by rollout index.
    typealias PerToken = [Int: [Float]]

    static func microBatch(_ indices: [Int], rollouts: [Rollout], padding: Int32, aggregation: LossAggregation,
                           globalSequences: Int, globalTokens: Int, maxTokens: Int,
                           old: PerToken?, reference: PerToken?, importanceCap: Float?) -> PolicyMicroBatch {
        let sequence = indices.map { rollouts[$0].promptIds.count + rollouts[$0].completionIds.count }.max() ?? 1
        let n = indices.count * sequence
        var ids = [Int32](repeating: padding, count: n)
        var weights = [Float](repeating: 0, count: n), advantages = [Float](repeating: 0, count: n)
        var oldLP: [Float]? = old.map { _ in [Float](repeating: 0, count: n) }
        var refLP: [Float]? = reference.map { _ in [Float](repeating: 0, count: n) }
        var engineLP: [Float]? = importanceCap.map { _ in [Float](repeating: 0, count: n) }
        for (b, i) in indices.enumerated() {
            let r = rollouts[i], base = b * sequence, p = r.promptIds.count
            for (t, id) in (r.promptIds + r.completionIds).enumerated() { ids[base + t] = id }
            let w = aggregation.tokenWeight(length: r.completionIds.count, sequences: globalSequences, tokens: globalTokens, maxTokens: maxTokens)
            for k in 0..<r.completionIds.count {
                let at = base + p + k
                weights[at] = w
                advantages[at] = Float(r.advantage)
                oldLP?[at] = old![i]![k]
                refLP?[at] = reference![i]![k]
                engineLP?[at] = r.engineLogProbs[k]
            }
        }
        return PolicyMicroBatch(batch: TokenBatch(ids: ids, batch: indices.count, sequence: sequence),
                                inputs: PolicyInputs(weights: weights, advantages: advantages, oldLogProbs: oldLP,
                                                     referenceLogProbs: refLP, engineLogProbs: engineLP, importanceCap: importanceCap))
    }

    /// The TokenBatch of `indices` alone (for log-prob passes) and where each completion starts.
    static func tokens(_ indices: [Int], rollouts: [Rollout], padding: Int32) -> TokenBatch {
        let sequence = indices.map { rollouts[$0].promptIds.count + rollouts[$0].completionIds.count }.max() ?? 1
        var ids = [Int32](repeating: padding, count: indices.count * sequence)
        for (b, i) in indices.enumerated() {
            for (t, id) in (rollouts[i].promptIds + rollouts[i].completionIds).enumerated() { ids[b * sequence + t] = id }
        }
        return TokenBatch(ids: ids, batch: indices.count, sequence: sequence)
    }

    /// Splits `items` round-robin over `parts` (item j to part j % parts): every part gets a mix.
    static func deal<T>(_ items: [T], into parts: Int) -> [[T]] {
        var out = [[T]](repeating: [], count: parts)
        for (j, x) in items.enumerated() { out[j % parts].append(x) }
        return out
    }

    static func chunks<T>(_ items: [T], of size: Int) -> [[T]] {
        stride(from: 0, to: items.count, by: size).map { Array(items[$0..<min($0 + size, items.count)]) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Compute

/// Picks the next token from one row of logits on the host. When it truncates (top-k, top-p) it sorts
/// the tokens by probability and draws over them in that order. On a GPU the generator samples on the
/// device instead (`DeviceTokenSelection.sampleTokens`): the same distribution, drawn over the kept
/// tokens in index order, so a seed gives other tokens there than here.
public enum Sampler {
    /// Temperatures below this pick the most likely token (greedy).
    public static let greedyTemperature: Float = 1e-5

    /// Returns the chosen token and its raw log-probability. `logits` has `vocab` entries. When they
    /// hold a NaN or +infinity there is no distribution, and the log-probability returned is NaN.
    public static func sample(_ logits: UnsafePointer<Float>, vocab: Int, params: SamplingParams,
                              rng: inout SplitMix64) -> (token: Int32, logprob: Float) {
        var maxIndex = 0
        var maxValue = logits[0]
        for i in 1..<vocab where logits[i] > maxValue {
            maxValue = logits[i]
            maxIndex = i
        }
        var sumExp: Double = 0
        for i in 0..<vocab { sumExp += Double(expf(logits[i] - maxValue)) }
        let logZ = Float(log(sumExp)) + maxValue
        func logprob(_ t: Int) -> Float { logits[t] - logZ }
        // A NaN or +infinity anywhere makes the normaliser NaN: no distribution to draw from. The NaN
        // log-probability tells the caller, which reports it (`Generator`).
        guard logZ.isFinite else { return (Int32(maxIndex), .nan) }

        if params.temperature < greedyTemperature { return (Int32(maxIndex), logprob(maxIndex)) }

        // Probabilities at the temperature, unnormalised.
        let invT = 1 / params.temperature
        var probs = [Float](unsafeUninitializedCapacity: vocab) { buf, count in
            for i in 0..<vocab { buf[i] = expf((logits[i] - maxValue) * invT) }
            count = vocab
        }
        let topK = params.topK > 0 ? min(params.topK, vocab) : vocab
        if topK == vocab && params.topP >= 1 {
            let token = draw(&probs, candidates: nil, rng: &rng)
            return (Int32(token), logprob(token))
        }
        // Truncation needs the tokens in order of probability.
        var order = Array(0..<vocab)
        order.sort { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
        var keep = topK
        if params.topP < 1 {
            var total: Float = 0
            for i in 0..<keep { total += probs[order[i]] }
            var cumulative: Float = 0
            for i in 0..<keep {
                cumulative += probs[order[i]]
                if cumulative >= params.topP * total {
                    keep = i + 1
                    break
                }
            }
        }
        let token = draw(&probs, candidates: Array(order[0..<keep]), rng: &rng)
        return (Int32(token), logprob(token))
    }

    /// Inverse-CDF draw over `candidates` (all tokens when nil) weighted by `probs`.
    private static func draw(_ probs: inout [Float], candidates: [Int]?, rng: inout SplitMix64) -> Int {
        let u = rng.nextUnitFloat()
        if let candidates {
            let total = candidates.reduce(Float(0)) { $0 + probs[$1] }
            var target = u * total
            for t in candidates {
                target -= probs[t]
                if target < 0 { return t }
            }
            return candidates.last!
        }
        var total: Double = 0
        for p in probs { total += Double(p) }
        var target = Double(u) * total
        var last = 0
        for (t, p) in probs.enumerated() where p > 0 {
            target -= Double(p)
            last = t
            if target < 0 { return t }
        }
        return last
    }
}

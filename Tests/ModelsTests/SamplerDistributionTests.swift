import Compute
import Foundation
import Testing

@testable import Models

/// The host sampler draws from exactly the distribution vLLM defines: softmax of logits / T, then
/// top-k (the k largest), then top-p over the renormalised top-k probabilities (vLLM's
/// `apply_top_k_top_p`: sort ascending, drop every token whose cumulative probability is ≤ 1 - p,
/// always keep the most likely). Many seeded draws are compared with the exact probabilities by a
/// chi-square statistic against its critical value at significance 10⁻⁶: a statistical tolerance,
/// so that a correct sampler passes for essentially any seed and a wrong one fails by far.
@Suite struct SamplerDistributionTests {
    static let logits: [Float] = [2.0, 1.5, 0.2, 1.0, -0.5, 0.6, -1.0, -3.0]
    static let draws = 100_000
    /// χ² critical values at p = 10⁻⁶ for 1...7 degrees of freedom.
    static let critical: [Double] = [23.93, 27.63, 30.66, 33.38, 35.89, 38.26, 40.52]

    /// The exact probabilities, computed in Double as vLLM does (not by the code under test).
    static func reference(_ logits: [Float], temperature: Double, topK: Int, topP: Double) -> [Double] {
        let scaled = logits.map { Double($0) / temperature }
        var keep = Set(scaled.indices)
        if topK > 0 && topK < scaled.count {
            keep = Set(scaled.indices.sorted { scaled[$0] > scaled[$1] }.prefix(topK))
        }
        func softmax(over kept: Set<Int>) -> [Double] {
            let m = kept.map { scaled[$0] }.max()!
            let e = scaled.indices.map { kept.contains($0) ? exp(scaled[$0] - m) : 0 }
            let z = e.reduce(0, +)
            return e.map { $0 / z }
        }
        var probs = softmax(over: keep)
        if topP < 1 {
            let ascending = keep.sorted { probs[$0] < probs[$1] }
            var cumulative = 0.0
            for (i, t) in ascending.enumerated() {
                cumulative += probs[t]
                // Away from the boundary, so that float rounding in the sampler cannot decide it.
                precondition(abs(cumulative - (1 - topP)) > 1e-3, "top-p \(topP) is too close to a cumulative sum")
                if cumulative <= 1 - topP && i < ascending.count - 1 { keep.remove(t) }
            }
            probs = softmax(over: keep)
        }
        return probs
    }

    static let cases: [(temperature: Float, topK: Int, topP: Float)] = [
        (0.7, -1, 1),     // temperature only
        (1.6, -1, 1),
        (1.0, 3, 1),      // top-k
        (1.0, 1, 1),      // top-k of one: always the argmax
        (1.0, -1, 0.8),   // top-p
        (0.5, -1, 0.95),
        (1.3, 5, 0.9),    // all three
        (0.8, 6, 0.7),
    ]

    @Test(arguments: cases)
    func drawsMatchTheExactDistribution(_ c: (temperature: Float, topK: Int, topP: Float)) {
        let expected = Self.reference(Self.logits, temperature: Double(c.temperature), topK: c.topK, topP: Double(c.topP))
        let params = SamplingParams(temperature: c.temperature, topP: c.topP, topK: c.topK)
        var rng = SplitMix64(seed: 0x5A4D_91E5 &+ UInt64(c.topK + 10) &* 31 &+ UInt64(c.temperature * 100))
        var counts = [Int](repeating: 0, count: Self.logits.count)
        Self.logits.withUnsafeBufferPointer { p in
            for _ in 0..<Self.draws {
                counts[Int(Sampler.sample(p.baseAddress!, vocab: p.count, params: params, rng: &rng).token)] += 1
            }
        }
        // Tokens outside the kept set are never drawn.
        for t in expected.indices where expected[t] == 0 { #expect(counts[t] == 0, "token \(t) was cut but drawn \(counts[t]) times") }
        let kept = expected.indices.filter { expected[$0] > 0 }
        guard kept.count > 1 else {
            #expect(counts[kept[0]] == Self.draws)
            return
        }
        let n = Double(Self.draws)
        let chiSquare = kept.reduce(0.0) { sum, t in
            let e = n * expected[t]
            return sum + (Double(counts[t]) - e) * (Double(counts[t]) - e) / e
        }
        let limit = Self.critical[kept.count - 2]
        #expect(chiSquare < limit, "χ² \(chiSquare) ≥ \(limit) (df \(kept.count - 1)): counts \(counts), expected \(expected.map { $0 * n })")
    }

    /// The test can fail: a sampler that ignored the temperature would be far outside the tolerance.
    @Test func theStatisticSeparatesAWrongTemperature() {
        let right = Self.reference(Self.logits, temperature: 0.7, topK: -1, topP: 1)
        let wrong = Self.reference(Self.logits, temperature: 1.0, topK: -1, topP: 1)
        let n = Double(Self.draws)
        let chiSquare = right.indices.reduce(0.0) { $0 + pow(n * wrong[$1] - n * right[$1], 2) / (n * right[$1]) }
        #expect(chiSquare > 100 * Self.critical[6])
    }

    /// Greedy (temperature below the threshold) is the argmax, with its raw log-probability.
    @Test func greedyIsTheArgmax() {
        var rng = SplitMix64(seed: 9)
        let pick = Self.logits.withUnsafeBufferPointer { Sampler.sample($0.baseAddress!, vocab: $0.count, params: .greedy, rng: &rng) }
        let z = log(Self.logits.map { exp(Double($0)) }.reduce(0, +))
        #expect(pick.token == 0)
        #expect(abs(Double(pick.logprob) - (2.0 - z)) < 1e-5)
    }
}

import Foundation
import Testing
@testable import RL
import Training

@Suite struct GRPOMathTests {
    @Test func advantagesMatchTRLWithUnbiasedStd() throws {
        // torch: r = tensor([1., 0., 0., 1., 1., 1., 1., 1.]).view(-1, 4); (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)
        let a = try GroupAdvantages(rewards: [1, 0, 0, 1, 1, 1, 1, 1], groupSize: 4, scaling: .group)
        let std = (1.0 / 3).squareRoot()  // unbiased std of [1,0,0,1]
        #expect(abs(a.advantages[0] - 0.5 / (std + 1e-4)) < 1e-12)
        #expect(abs(a.advantages[1] + 0.5 / (std + 1e-4)) < 1e-12)
        #expect(a.advantages[4...].allSatisfy { $0 == 0 })
        #expect(a.fractionZeroStdGroups == 0.5)
        let dr = try GroupAdvantages(rewards: [1, 0, 0, 1], groupSize: 4, scaling: .none)
        #expect(dr.advantages == [0.5, -0.5, -0.5, 0.5])
        #expect(throws: RLError.self) { try GroupAdvantages(rewards: [1, 0], groupSize: 1, scaling: .group) }
        #expect(throws: RLError.self) { try GroupAdvantages(rewards: [1, 0, 1], groupSize: 2, scaling: .group) }
    }

    @Test func aggregationWeightsSumToTheRightNormaliser() {
        // Two sequences of 3 and 1 tokens, max 4 tokens.
        let lengths = [3, 1]
        func total(_ agg: LossAggregation) -> Float {
            lengths.reduce(0) { $0 + Float($1) * agg.tokenWeight(length: $1, sequences: 2, tokens: 4, maxTokens: 4) }
        }
        #expect(abs(total(.tokenMean) - 1) < 1e-6)
        #expect(abs(total(.seqMeanTokenMean) - 1) < 1e-6)
        #expect(abs(total(.seqMeanTokenSumNorm) - 0.5) < 1e-6)  // (3 + 1) / (2 · 4)
    }

    /// A random micro-batch of `n` tokens with a mix of advantages, ratios inside and outside the clip range.
    func inputs(n: Int, seed: UInt64, reference: Bool, importance: Bool) -> (PolicyInputs, [Float]) {
        var state = seed
        func u() -> Float { state = state &* 6364136223846793005 &+ 1442695040888963407; return Float(state >> 40) * 0x1p-24 }
        var w = [Float](), a = [Float](), old = [Float](), ref = [Float](), eng = [Float](), lp = [Float]()
        for i in 0..<n {
            w.append(i % 5 == 0 ? 0 : 0.1 + u())
            a.append((u() - 0.5) * 3)
            let l = -0.2 - 3 * u()
            lp.append(l)
            old.append(l + (u() - 0.5) * 0.9)  // ratios spread over ~[0.64, 1.57]
            ref.append(l + (u() - 0.5))
            eng.append(old[i] + (u() - 0.5) * 3)  // importance weights up to e^1.5, some capped at 3
        }
        return (PolicyInputs(weights: w, advantages: a, oldLogProbs: old, referenceLogProbs: reference ? ref : nil,
                             engineLogProbs: importance ? eng : nil, importanceCap: importance ? 3 : nil), lp)
    }

    @Test(arguments: [(false, false, 0.0), (true, false, 0.1), (true, true, 0.05), (false, true, 0.0)])
    func policyGradientMatchesFiniteDifferences(reference: Bool, importance: Bool, beta: Double) throws {
        let n = 64
        let (inp, lp) = inputs(n: n, seed: 42, reference: reference, importance: importance)
        let tokens = Array(0..<n)
        let objective = PolicyObjective(inputs: inp, clipLow: 0.2, clipHigh: 0.28, klCoefficient: Float(beta))
        let (_, grad) = try objective.evaluate(tokens: tokens, logProbs: lp, entropy: nil)
        // Central differences in f64 of the same formula, away from the clip kinks.
        func loss(_ x: [Double]) -> Double {
            var s = 0.0
            for i in 0..<n where inp.weights[i] != 0 {
                let r = exp(x[i] - Double(inp.oldLogProbs![i])), a = Double(inp.advantages[i])
                let old = Double(inp.oldLogProbs![i])
                let isw = inp.engineLogProbs.map { min(exp(old - Double($0[i])), 3) } ?? 1
                var l = -min(r * a, min(max(r, 0.8), 1.28) * a) * isw
                if let ref = inp.referenceLogProbs?[i] { let d = Double(ref) - x[i]; l += beta * (exp(d) - d - 1) }
                s += Double(inp.weights[i]) * l
            }
            return s
        }
        let x = lp.map(Double.init)
        var checked = 0
        for i in 0..<n {
            let r = exp(x[i] - Double(inp.oldLogProbs![i]))
            if abs(r - 0.8) < 1e-3 || abs(r - 1.28) < 1e-3 { continue }
            var p = x, m = x
            p[i] += 1e-5
            m[i] -= 1e-5
            let fd = (loss(p) - loss(m)) / 2e-5
            #expect(abs(fd - Double(grad[i])) < 1e-4 * max(1, abs(fd)), "token \(i): fd \(fd) vs \(grad[i])")
            checked += 1
        }
        #expect(checked > n / 2)
        // Masked tokens get no gradient; some tokens are clipped (zero gradient) on both sides.
        #expect(grad[0] == 0 && grad[5] == 0)
        let s = objective.statistics
        #expect(s.tokens == n - (n + 4) / 5)
        #expect(s.clippedLow > 0 && s.clippedHigh > 0)
        #expect((s.klSum > 0) == reference)
    }

    @Test func ratioOneGivesTheVanillaPolicyGradient() throws {
        let inp = PolicyInputs(weights: [0, 0.5, 0.5], advantages: [0, 2, -1], oldLogProbs: [0, -1, -2])
        let o = PolicyObjective(inputs: inp)
        let (loss, g) = try o.evaluate(tokens: [0, 1, 2], logProbs: [0, -1, -2], entropy: nil)
        #expect(abs(loss - (-0.5 * 2 + 0.5 * 1)) < 1e-6)
        #expect(g == [0, -1, 0.5])
        #expect(o.statistics.clippedLow == 0 && o.statistics.clippedHigh == 0)
        // Without old log-probs (one update per batch) the ratio is 1 and the gradient the same.
        let onPolicy = PolicyObjective(inputs: PolicyInputs(weights: [0, 0.5, 0.5], advantages: [0, 2, -1], oldLogProbs: nil))
        let (loss2, g2) = try onPolicy.evaluate(tokens: [0, 1, 2], logProbs: [0, -1, -2], entropy: [0, 1.5, 0.5])
        #expect(loss2 == loss && g2 == g)
        #expect(onPolicy.statistics.meanEntropy == 1)
    }

    @Test func chunksAddUpToTheWholeBatch() throws {
        // The model evaluates chunk by chunk; the sum over chunks must equal one evaluation of everything.
        let (inp, lp) = inputs(n: 40, seed: 3, reference: true, importance: false)
        let whole = PolicyObjective(inputs: inp, klCoefficient: 0.1)
        let (l, g) = try whole.evaluate(tokens: Array(0..<40), logProbs: lp, entropy: nil)
        let chunked = PolicyObjective(inputs: inp, klCoefficient: 0.1)
        let (l1, g1) = try chunked.evaluate(tokens: Array(0..<17), logProbs: Array(lp[0..<17]), entropy: nil)
        let (l2, g2) = try chunked.evaluate(tokens: Array(17..<40), logProbs: Array(lp[17..<40]), entropy: nil)
        #expect(abs(l - (l1 + l2)) < 1e-9)
        #expect(g == g1 + g2)
        #expect(whole.statistics == chunked.statistics)
    }
}

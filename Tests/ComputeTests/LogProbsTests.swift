import Compute
import Foundation
import Testing

/// Log-probabilities of chosen tokens, entropy, and their backward against f64 references.
@Suite struct LogProbsTests {
    let backend = CPUBackend()

    @Test func logProbsEntropyAndBackward() throws {
        let rows = 6, vocabulary = 83
        var rng = SplitMix64(seed: 41)
        let logits = rng.floats(rows * vocabulary, in: -8...8)
        let targets = (0..<rows).map { _ in Int32(rng.int(below: vocabulary)) }
        let lp = try Tensor.zeros([rows]), entropy = try Tensor.zeros([rows])
        let x = tensor(logits, [rows, vocabulary])
        backend.tokenLogProbs(x, targets: targets, into: lp, entropy: entropy)
        var expectedLP = [Double](), expectedH = [Double](), softmax = [[Double]]()
        for r in 0..<rows {
            let row = logits[r * vocabulary..<(r + 1) * vocabulary].map(Double.init)
            let m = row.max()!, lse = m + log(row.reduce(0) { $0 + exp($1 - m) })
            let p = row.map { exp($0 - lse) }
            softmax.append(p)
            expectedLP.append(row[Int(targets[r])] - lse)
            expectedH.append(-zip(p, row).reduce(0) { $0 + $1.0 * ($1.1 - lse) })
        }
        #expect(maxScaledError(lp.floats(), expectedLP) < 1e-6)
        #expect(maxScaledError(entropy.floats(), expectedH) < 1e-5)
        let withoutEntropy = try Tensor.zeros([rows])
        backend.tokenLogProbs(x, targets: targets, into: withoutEntropy, entropy: nil)
        #expect(maxScaledError(withoutEntropy.floats(), expectedLP) < 1e-6)

        var dLogProb = rng.floats(rows)
        dLogProb[2] = 0
        backend.tokenLogProbsBackward(x, targets: targets, logProbGradient: tensor(dLogProb, [rows]))
        var expected = [Double](repeating: 0, count: rows * vocabulary)
        for r in 0..<rows {
            for c in 0..<vocabulary {
                expected[r * vocabulary + c] = Double(dLogProb[r]) * ((c == Int(targets[r]) ? 1 : 0) - softmax[r][c])
            }
        }
        let got = x.floats()
        #expect(maxScaledError(got, expected) < 1e-6)
        #expect(got[2 * vocabulary..<3 * vocabulary].allSatisfy { $0 == 0 })
    }
}

import Compute
import Foundation
import Testing

/// Whole-sequence causal attention with GQA: forward and log-sum-exp against an f64 reference, the
/// backward against central differences of it; rotary's backward is its transpose.
@Suite struct AttentionTrainingTests {
    let backend = CPUBackend()
    let batch = 2, sequence = 7, heads = 4, kvHeads = 2, d = 12
    let scale: Float = 0.3

    /// Output [N, heads, d] followed by the log-sum-exps [N, heads].
    func reference(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
        let n = batch * sequence, group = heads / kvHeads
        var out = [Double](repeating: 0, count: n * heads * d), lse = [Double](repeating: 0, count: n * heads)
        for b in 0..<batch {
            for i in 0..<sequence {
                for h in 0..<heads {
                    let qi = ((b * sequence + i) * heads + h) * d, g = h / group
                    var s = [Double]()
                    for j in 0...i {
                        let kj = ((b * sequence + j) * kvHeads + g) * d
                        s.append((0..<d).reduce(0) { $0 + q[qi + $1] * k[kj + $1] } * Double(scale))
                    }
                    let m = s.max()!, e = s.map { exp($0 - m) }, sum = e.reduce(0, +)
                    lse[(b * sequence + i) * heads + h] = m + log(sum)
                    for j in 0...i {
                        let vj = ((b * sequence + j) * kvHeads + g) * d
                        for c in 0..<d { out[qi + c] += e[j] / sum * v[vj + c] }
                    }
                }
            }
        }
        return out + lse
    }

    @Test func forwardAndBackward() throws {
        let n = batch * sequence
        var rng = SplitMix64(seed: 31)
        let q = rng.floats(n * heads * d, in: -2...2), k = rng.floats(n * kvHeads * d, in: -2...2), v = rng.floats(n * kvHeads * d)
        let qt = tensor(q, [n, heads, d]), kt = tensor(k, [n, kvHeads, d]), vt = tensor(v, [n, kvHeads, d])
        let out = try Tensor.zeros([n, heads, d]), lse = try Tensor.zeros([n, heads])
        backend.causalAttention(q: qt, k: kt, v: vt, batch: batch, sequence: sequence, scale: scale, into: out, logSumExp: lse)
        let qd = q.doubles, kd = k.doubles, vd = v.doubles
        let expected = reference(qd, kd, vd)
        #expect(maxScaledError(out.floats() + lse.floats(), expected) < 1e-5)

        let dOut = rng.floats(n * heads * d)
        let weights = dOut.doubles + [Double](repeating: 0, count: n * heads)
        let dq = try Tensor.zeros([n, heads, d]), dk = try Tensor.zeros([n, kvHeads, d]), dv = try Tensor.zeros([n, kvHeads, d])
        backend.causalAttentionBackward(q: qt, k: kt, v: vt, out: out, logSumExp: lse, outputGradient: tensor(dOut, [n, heads, d]),
                                        batch: batch, sequence: sequence, scale: scale, queryGradient: dq, keyGradient: dk, valueGradient: dv)
        #expect(maxScaledError(dq.floats(), numericalGradient(qd, weights: weights) { reference($0, kd, vd) }) < 1e-4)
        #expect(maxScaledError(dk.floats(), numericalGradient(kd, weights: weights) { reference(qd, $0, vd) }) < 1e-4)
        #expect(maxScaledError(dv.floats(), numericalGradient(vd, weights: weights) { reference(qd, kd, $0) }) < 1e-4)
    }

    /// ⟨R x, y⟩ = ⟨x, Rᵀ y⟩, and Rᵀ R x = x.
    @Test func rotaryBackwardIsTheTranspose() throws {
        let n = 9, h = 3, dim = 20
        var rng = SplitMix64(seed: 32)
        let x = rng.floats(n * h * dim), y = rng.floats(n * h * dim)
        let positions = (0..<n).map { Int32($0 * 5) }
        let rx = tensor(x, [n, h, dim]), ry = tensor(y, [n, h, dim])
        backend.rotary(rx, positions: positions, theta: 10000)
        backend.rotaryBackward(ry, positions: positions, embedding: RotaryEmbedding(theta: 10000, headDim: dim))
        let left = zip(rx.floats(), y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let right = zip(x, ry.floats()).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(left - right) < 1e-4)
        backend.rotaryBackward(rx, positions: positions, embedding: RotaryEmbedding(theta: 10000, headDim: dim))
        #expect(maxScaledError(rx.floats(), x.doubles) < 1e-6)
    }
}

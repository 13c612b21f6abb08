import Compute
import Foundation
import Testing

@Suite("CPU rotary embedding")
struct RotaryTests {
    let backend = CPUBackend()

    /// transformers' `rotate_half` formulation in double precision:
    /// out = x·cos(emb) + rotate_half(x)·sin(emb), emb = cat(freqs, freqs), freqs = pos · θ^(−2i/d).
    static func reference(_ x: [Float], positions: [Int32], heads: Int, headDim d: Int, theta: Double) -> [Double] {
        var out = [Double](repeating: 0, count: x.count)
        let half = d / 2
        for (n, pos) in positions.enumerated() {
            for h in 0..<heads {
                let base = (n * heads + h) * d
                for j in 0..<d {
                    let i = j % half
                    let angle = Double(pos) / pow(theta, Double(2 * i) / Double(d))
                    let rotated = j < half ? -Double(x[base + j + half]) : Double(x[base + j - half])
                    out[base + j] = Double(x[base + j]) * cos(angle) + rotated * sin(angle)
                }
            }
        }
        return out
    }

    @Test("matches transformers' rotate-half formula",
          arguments: [(3, 8, 10_000.0), (2, 12, 10_000.0), (4, 64, 1_000_000.0), (1, 128, 500_000.0)])
    func rotateHalf(heads: Int, headDim: Int, theta: Double) {
        var random = SplitMix64(seed: UInt64(heads * 1000 + headDim))
        // Positions out of order, repeated, and up to 50; f32 angles stay within 1e-5 rad of exact there.
        let positions: [Int32] = [0, 1, 2, 50, 7, 7, 31, 13]
        let values = random.floats(positions.count * heads * headDim, in: -2...2)
        let x = tensor(values, [positions.count, heads, headDim])
        backend.rotary(x, positions: positions, theta: Float(theta))
        let reference = Self.reference(values, positions: positions, heads: heads, headDim: headDim, theta: theta)
        let error = zip(x.floats(), reference).map { abs(Double($0) - $1) }.max() ?? 0
        #expect(error < 2e-5, "heads \(heads) headDim \(headDim): max abs error \(error) on values up to 2")
        // Position 0 is the identity.
        let firstToken = heads * headDim
        #expect(Array(x.floats()[0..<firstToken]) == Array(values[0..<firstToken]))
    }

    @Test("many tokens (split over threads) give the same result as one at a time")
    func manyTokens() {
        var random = SplitMix64(seed: 77)
        let tokens = 600, heads = 4, headDim = 32
        let positions = (0..<tokens).map { Int32($0 * 3 % 997) }
        let values = random.floats(tokens * heads * headDim)
        let all = tensor(values, [tokens, heads, headDim])
        backend.rotary(all, positions: positions, theta: 10_000)
        let rotated = all.floats()
        for n in stride(from: 0, to: tokens, by: 97) {
            let one = tensor(Array(values[n * heads * headDim ..< (n + 1) * heads * headDim]), [1, heads, headDim])
            backend.rotary(one, positions: [positions[n]], theta: 10_000)
            #expect(one.floats() == Array(rotated[n * heads * headDim ..< (n + 1) * heads * headDim]))
        }
    }
}

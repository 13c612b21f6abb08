import Compute
import Foundation
import Testing

@Suite("CPU elementwise ops")
struct ElementwiseTests {
    let backend = CPUBackend()

    static func reference(_ kind: Activation, _ x: Double) -> Double {
        switch kind {
        case .relu: return max(x, 0)
        case .gelu: return 0.5 * x * erfc(-x / 2.0.squareRoot())
        // 0.5·x·(1 + tanh(u)) = x / (1 + e^(−2u)); the second form keeps the negative tail in double.
        case .geluTanh: return x / (1 + exp(-2 * (2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        case .silu: return x / (1 + exp(-x))
        }
    }

    /// Random values in [-range, range] plus special points, `count` in all.
    static func inputs(_ count: Int, range: Float, seed: UInt64) -> [Float] {
        var random = SplitMix64(seed: seed)
        var values = random.floats(count, in: -range...range)
        let special: [Float] = [0, -0.0, 1, -1, range, -range, 1e-3, -1e-3, 5e-8]
        for (i, v) in special.enumerated() where i < count { values[(i * 7919) % count] = v }
        return values
    }

    @Test("activations against double precision", arguments: [Activation.relu, .gelu, .geluTanh, .silu])
    func activations(kind: Activation) {
        // Sizes around the vector width, and one large enough to be split over threads.
        for count in [1, 7, 8, 9, 100, 40_000] {
            let values = Self.inputs(count, range: 12, seed: UInt64(count))
            let x = tensor(values, [count])
            let y = try! backend.zeros([count], dtype: .f32)
            backend.activation(kind, x, into: y)
            // Relative precision everywhere, down to the tiny tails (gelu(−12) ≈ −2e-32). Where a
            // function goes through e^t, the f32 rounding of t costs |t|·6e-8 relative on top.
            for (x, got) in zip(values, y.floats()) {
                let want = Self.reference(kind, Double(x))
                let t: Double = switch kind {
                case .silu: abs(Double(x))
                case .geluTanh: abs(1.6 * Double(x) * (1 + 0.044715 * Double(x * x)))
                case .relu, .gelu: 0
                }
                let tolerance = (2e-6 + 2e-7 * t) * abs(want) + 1e-37
                #expect(abs(Double(got) - want) <= tolerance, "\(kind)(\(x)) = \(got), want \(want)")
            }
        }
    }

    @Test("GELU keeps relative precision deep in the negative tail")
    func geluTail() {
        let values: [Float] = stride(from: -13, through: -3, by: 0.37).map { Float($0) }
        let x = tensor(values, [values.count])
        backend.activation(.gelu, x, into: x)
        let reference = values.map { Self.reference(.gelu, Double($0)) }
        #expect(maxRelativeError(x.floats(), reference, floor: 1e-37) < 2e-6)
    }

    @Test("in place, SwiGLU and add, with aliasing")
    func swiGLUAndAdd() {
        var random = SplitMix64(seed: 5)
        for count in [3, 16, 37, 50_001] {
            let g = random.floats(count, in: -8...8), u = random.floats(count, in: -2...2)
            let gate = tensor(g, [count]), up = tensor(u, [count]), y = try! backend.zeros([count], dtype: .f32)
            backend.swiGLU(gate: gate, up: up, into: y)
            let swiglu = zip(g, u).map { Self.reference(.silu, Double($0)) * Double($1) }
            #expect(maxRelativeError(y.floats(), swiglu, floor: 1e-30) < 2e-6)

            backend.add(gate, up, into: gate)  // y aliases a
            #expect(gate.floats() == zip(g, u).map { $0 + $1 })
        }
    }
}

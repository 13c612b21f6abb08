import Compute
import Foundation
import Testing

/// Activation, SwiGLU, scale and sum-of-squares backward ops against f64 derivatives.
@Suite struct ElementwiseBackwardTests {
    let backend = CPUBackend()

    static func activation(_ kind: Activation, _ x: Double) -> Double {
        switch kind {
        case .relu: return max(x, 0)
        case .gelu: return 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
        case .geluTanh: return 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        case .silu: return x / (1 + exp(-x))
        }
    }

    @Test(arguments: [Activation.relu, .gelu, .geluTanh, .silu])
    func activationDerivative(kind: Activation) throws {
        var rng = SplitMix64(seed: 21)
        // 37 elements: vector body and tail; avoid |x| tiny for relu's kink.
        var x = rng.floats(37, in: -6...6)
        if kind == .relu { x = x.map { abs($0) < 0.01 ? 0.5 : $0 } }
        x[0] = 0.3
        let dy = rng.floats(37)
        let dx = try Tensor.zeros([37])
        backend.activationBackward(kind, input: tensor(x, [37]), outputGradient: tensor(dy, [37]), into: dx)
        let h = 1e-6
        let expected = (0..<37).map { i -> Double in
            let xi = Double(x[i])
            return Double(dy[i]) * (Self.activation(kind, xi + h) - Self.activation(kind, xi - h)) / (2 * h)
        }
        #expect(maxScaledError(dx.floats(), expected) < 2e-6)
    }

    @Test func activationBackwardInPlace() throws {
        var rng = SplitMix64(seed: 22)
        let x = tensor(rng.floats(20), [20]), dy = tensor(rng.floats(20), [20])
        let separate = try Tensor.zeros([20])
        backend.activationBackward(.silu, input: x, outputGradient: dy, into: separate)
        backend.activationBackward(.silu, input: x, outputGradient: dy, into: dy)
        #expect(separate.floats() == dy.floats())
    }

    @Test func swiGLUGradients() throws {
        var rng = SplitMix64(seed: 23)
        let n = 29
        let gate = rng.floats(n, in: -5...5), up = rng.floats(n, in: -2...2), dy = rng.floats(n)
        let dGate = try Tensor.zeros([n]), dUp = try Tensor.zeros([n])
        backend.swiGLUBackward(gate: tensor(gate, [n]), up: tensor(up, [n]), outputGradient: tensor(dy, [n]), gateGradient: dGate, upGradient: dUp)
        func f(_ g: Double, _ u: Double) -> Double { g / (1 + exp(-g)) * u }
        let h = 1e-6
        let eg = (0..<n).map { i in Double(dy[i]) * (f(Double(gate[i]) + h, Double(up[i])) - f(Double(gate[i]) - h, Double(up[i]))) / (2 * h) }
        let eu = (0..<n).map { i in Double(dy[i]) * f(Double(gate[i]), 1) }
        #expect(maxScaledError(dGate.floats(), eg) < 2e-6)
        #expect(maxScaledError(dUp.floats(), eu) < 2e-6)
    }

    @Test func scaleAndSumOfSquares() throws {
        var rng = SplitMix64(seed: 24)
        let n = 100_003
        let x = rng.floats(n)
        let t = tensor(x, [n])
        let expected = x.reduce(0.0) { $0 + Double($1) * Double($1) }
        let got = try backend.sumOfSquares(t)
        #expect(abs(got - expected) / expected < 1e-6)
        #expect(try backend.sumOfSquares(t) == got, "the same sum every time")
        backend.scale(t, by: -0.5, into: t)
        #expect(t.floats() == x.map { $0 * -0.5 })
    }
}

import Compute
import Foundation
import Testing

/// The fused linear ops' defaults (what the CPU runs, and what a GPU falls back to) against the ops they
/// stand for: the same values bit for bit, and those values right against a double reference.
@Suite("Fused linear ops: defaults")
struct FusedLinearTests {
    let backend = CPUBackend()

    func bits(_ t: Tensor) -> [UInt32] { t.floats().map(\.bitPattern) }

    /// `act(x · Wᵀ + b)` in double, W and b as stored.
    static func reference(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ act: (Double) -> Double = { $0 }) -> [Double] {
        let (n, k, o) = (x.shape[0], x.shape[1], w.shape[0])
        let (xs, ws, bs) = (x.floats(), w.floats(), b?.floats())
        return (0..<(n * o)).map { i in
            let (r, j) = (i / o, i % o)
            var s = Double(bs?[j] ?? 0)
            for e in 0..<k { s += Double(xs[r * k + e]) * Double(ws[j * k + e]) }
            return act(s)
        }
    }

    @Test("linears: each layer's output is its own linear", arguments: [DType.f32, .bf16, .f16])
    func linears(dtype: DType) throws {
        var random = SplitMix64(seed: 21)
        for (n, k) in [(1, 64), (7, 40)] {
            let x = tensor(random.floats(n * k), [n, k])
            // q, k and v of a grouped-query layer: a wider q; v without a bias.
            let shapes = [(o: 48, bias: true), (o: 16, bias: true), (o: 16, bias: false), (o: 8, bias: true)]
            let layers = shapes.map { shape in
                (weight: tensor(random.floats(shape.o * k), [shape.o, k], dtype),
                 bias: shape.bias ? tensor(random.floats(shape.o), [shape.o]) : nil,
                 output: try! backend.zeros([n, shape.o], dtype: .f32))
            }
            backend.linears(x, layers)
            for (i, layer) in layers.enumerated() {
                let alone = try backend.zeros([n, shapes[i].o], dtype: .f32)
                backend.linear(x, weight: layer.weight, bias: layer.bias, into: alone)
                #expect(bits(layer.output) == bits(alone), "layer \(i) of [\(n),\(k)] \(dtype)")
                #expect(maxRelativeError(layer.output.floats(), Self.reference(x, layer.weight, layer.bias), floor: 1e-2) < 1e-4)
            }
        }
    }

    @Test("linearActivation is linear then activation",
          arguments: [Activation.relu, .gelu, .geluTanh, .silu], [DType.f32, .bf16, .f16])
    func linearActivation(kind: Activation, dtype: DType) throws {
        var random = SplitMix64(seed: 22)
        for (n, k, o, withBias) in [(1, 64, 40, true), (7, 48, 24, false)] {
            let x = tensor(random.floats(n * k), [n, k]), w = tensor(random.floats(o * k), [o, k], dtype)
            let b = withBias ? tensor(random.floats(o), [o]) : nil
            let y = try backend.zeros([n, o], dtype: .f32)
            try backend.linearActivation(x, weight: w, bias: b, activation: kind, into: y)
            let hidden = try backend.zeros([n, o], dtype: .f32), composed = try backend.zeros([n, o], dtype: .f32)
            backend.linear(x, weight: w, bias: b, into: hidden)
            backend.activation(kind, hidden, into: composed)
            #expect(bits(y) == bits(composed), "\(kind) [\(n),\(k)]x[\(o),\(k)] \(dtype)")
            let act: (Double) -> Double = switch kind {
            case .relu: { max($0, 0) }
            case .gelu, .geluTanh: { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }  // the tanh form is within 1e-3
            case .silu: { $0 / (1 + exp(-$0)) }
            }
            #expect(maxRelativeError(y.floats(), Self.reference(x, w, b, act), floor: 1e-1) < (kind == .geluTanh ? 1e-2 : 1e-4))
        }
    }

    @Test("gatedLinear is two linears then swiGLU", arguments: [DType.f32, .bf16, .f16])
    func gatedLinear(dtype: DType) throws {
        var random = SplitMix64(seed: 23)
        for (n, k, o, withBias) in [(1, 64, 56, false), (7, 32, 24, true)] {
            let x = tensor(random.floats(n * k), [n, k])
            let gate = tensor(random.floats(o * k), [o, k], dtype), up = tensor(random.floats(o * k), [o, k], dtype)
            let (gateBias, upBias) = withBias ? (tensor(random.floats(o), [o]), tensor(random.floats(o), [o])) : (nil, nil)
            let y = try backend.zeros([n, o], dtype: .f32)
            try backend.gatedLinear(x, gate: gate, gateBias: gateBias, up: up, upBias: upBias, into: y)
            let g = try backend.zeros([n, o], dtype: .f32), u = try backend.zeros([n, o], dtype: .f32)
            let composed = try backend.zeros([n, o], dtype: .f32)
            backend.linear(x, weight: gate, bias: gateBias, into: g)
            backend.linear(x, weight: up, bias: upBias, into: u)
            backend.swiGLU(gate: g, up: u, into: composed)
            #expect(bits(y) == bits(composed), "[\(n),\(k)]x[\(o),\(k)] \(dtype) bias \(withBias)")
            let gates = Self.reference(x, gate, gateBias), ups = Self.reference(x, up, upBias)
            let expected = zip(gates, ups).map { $0 / (1 + exp(-$0)) * $1 }
            #expect(maxRelativeError(y.floats(), expected, floor: 1e-1) < 1e-4)
        }
    }
}

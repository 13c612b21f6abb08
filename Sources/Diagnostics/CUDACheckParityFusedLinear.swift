import Compute

/// The fused linear ops (`linears`, `linearActivation`, `gatedLinear`) against the unfused ops on the GPU
/// (the same values, exactly: the decode path must not change a greedy token) and against the CPU reference.
/// 1 and 7 rows run the fused skinny kernels, with and without biases; 40 rows the unfused fallback (cuBLASLt).
extension CUDAParityCheck {
    mutating func fusedLinears() throws {
        for n in [1, 7, 40] {
            for dtype in [DType.f32, .bf16, .f16] {
                for operand in Set([DType.f32, dtype]).sorted(by: { $0.byteSize > $1.byteSize }) {
                    for withBias in [false, true] where withBias || n < 40 {
                        let label = "[\(n),·] \(dtype) on \(operand)\(withBias ? " +b" : "")"
                        try fusedQKV(n: n, dtype: dtype, operand: operand, withBias: withBias, label: label)
                        try fusedActivation(n: n, dtype: dtype, operand: operand, withBias: withBias, label: label)
                        try fusedGated(n: n, dtype: dtype, operand: operand, withBias: withBias, label: label)
                    }
                }
            }
        }
    }

    /// x: f32 values (rounded to `operand` on upload), its device copy and the rounded values the GPU multiplies.
    private mutating func operands(n: Int, k: Int, dtype: DType, operand: DType) throws -> (device: Tensor, used: [Float]) {
        let x = random.floats(n * k)
        return (try up(x, [n, k], operand), CUDACheckReference.rounded(x, to: dtype))
    }

    /// q, k and v of a grouped-query layer and a fourth layer (a second launch of up to three).
    private mutating func fusedQKV(n: Int, dtype: DType, operand: DType, withBias: Bool, label: String) throws {
        let k = 256
        let widths = [224, 32, 32, 64]
        let (x, xr) = try operands(n: n, k: k, dtype: dtype, operand: operand)
        var layers: [(weight: Tensor, bias: Tensor?, output: Tensor)] = []
        var references: [[Float]] = []
        for (i, o) in widths.enumerated() {
            let w = random.floats(o * k, -0.1, 0.1), b = random.floats(o)
            let bias = withBias && i != 2 ? b : nil  // v without a bias: a null bias among others
            layers.append((try up(w, [o, k], dtype), try bias.map { try up($0, [o], dtype) }, try zeros([n, o])))
            references.append(CUDACheckReference.linear(xr, CUDACheckReference.rounded(w, to: dtype),
                                                        bias.map { CUDACheckReference.rounded($0, to: dtype) }, n: n, k: k, o: o))
        }
        backend.linears(x, layers)
        var fused: [Float] = [], unfused: [Float] = []
        for layer in layers {
            let alone = try zeros(layer.output.shape)
            backend.linear(x, weight: layer.weight, bias: layer.bias, into: alone)
            fused += try backend.floats(layer.output)
            unfused += try backend.floats(alone)
        }
        expect("linears q,k,v,+1 \(label)", fused, references.flatMap { $0 }, tolerance: 2e-5)
        expect("  … = one linear each", fused, unfused, tolerance: 0)
    }

    /// OPT's fc1 and its activation, into f32 (ReLU and tanh GELU) and into the weights' type (ReLU). The
    /// epilogue takes every kind through the formula `activation` uses; SiLU's runs in `fusedGated`.
    private mutating func fusedActivation(n: Int, dtype: DType, operand: DType, withBias: Bool, label: String) throws {
        let (k, o) = (768, 200)
        let (x, xr) = try operands(n: n, k: k, dtype: dtype, operand: operand)
        let w = random.floats(o * k, -0.1, 0.1), b = random.floats(o)
        let (weight, bias) = (try up(w, [o, k], dtype), withBias ? try up(b, [o], dtype) : nil)
        let linear = CUDACheckReference.linear(xr, CUDACheckReference.rounded(w, to: dtype),
                                               withBias ? CUDACheckReference.rounded(b, to: dtype) : nil, n: n, k: k, o: o)
        for output in Set([DType.f32, dtype]).sorted(by: { $0.byteSize > $1.byteSize }) {
            for kind in output == .f32 ? [Activation.relu, .geluTanh] : [.relu] {
                let y = try zeros([n, o], output)
                try backend.linearActivation(x, weight: weight, bias: bias, activation: kind, into: y)
                let hidden = try zeros([n, o]), composed = try zeros([n, o], output)
                backend.linear(x, weight: weight, bias: bias, into: hidden)
                backend.activation(kind, hidden, into: composed)
                let gpu = try backend.floats(y)
                let reference = CUDACheckReference.rounded(linear.map { CUDACheckReference.activation(kind, $0) }, to: output)
                expect("linear+\(kind.rawValue) → \(output) \(label)", gpu, reference, tolerance: Self.tolerance(output))
                expect("  … = linear, activation", gpu, try backend.floats(composed), tolerance: 0)
            }
        }
    }

    /// A SwiGLU MLP's gate and up projections and their product, into f32 and into the weights' type.
    private mutating func fusedGated(n: Int, dtype: DType, operand: DType, withBias: Bool, label: String) throws {
        let (k, o) = (896, 136)
        let (x, xr) = try operands(n: n, k: k, dtype: dtype, operand: operand)
        let g = random.floats(o * k, -0.1, 0.1), u = random.floats(o * k, -0.1, 0.1), gb = random.floats(o), ub = random.floats(o)
        let (gate, up) = (try self.up(g, [o, k], dtype), try self.up(u, [o, k], dtype))
        let (gateBias, upBias) = withBias ? (try self.up(gb, [o], dtype), try self.up(ub, [o], dtype)) : (nil, nil)
        func projection(_ w: [Float], _ b: [Float]) -> [Float] {
            CUDACheckReference.linear(xr, CUDACheckReference.rounded(w, to: dtype), withBias ? CUDACheckReference.rounded(b, to: dtype) : nil,
                                      n: n, k: k, o: o)
        }
        let product = zip(projection(g, gb), projection(u, ub)).map { CUDACheckReference.activation(.silu, $0) * $1 }
        for output in Set([DType.f32, dtype]).sorted(by: { $0.byteSize > $1.byteSize }) {
            let y = try zeros([n, o], output)
            try backend.gatedLinear(x, gate: gate, gateBias: gateBias, up: up, upBias: upBias, into: y)
            let gated = try zeros([n, o]), projected = try zeros([n, o]), composed = try zeros([n, o], output)
            backend.linear(x, weight: gate, bias: gateBias, into: gated)
            backend.linear(x, weight: up, bias: upBias, into: projected)
            backend.swiGLU(gate: gated, up: projected, into: composed)
            let gpu = try backend.floats(y)
            expect("gate,up+swiGLU → \(output) \(label)", gpu, CUDACheckReference.rounded(product, to: output), tolerance: Self.tolerance(output))
            expect("  … = two linears, swiGLU", gpu, try backend.floats(composed), tolerance: 0)
        }
    }

    /// f32: the linear check's; 16 bits: the rounded reference give or take one step (|y| < 8).
    private static func tolerance(_ output: DType) -> Float {
        switch output {
        case .bf16: 0.04
        case .f16: 0.005
        default: 2e-5
        }
    }
}

/// The fused linear ops on the GPU: several layers of one input, a layer and its activation, and the gate
/// and up projections of a SwiGLU MLP, each one launch of ``SkinnyLinearKernels`` where the skinny kernel
/// takes the shape (a decode step of a small batch), and the unfused ops otherwise. Both forms write the
/// same values: a fused column sums as `skinny_linear_*` does, and its epilogue is `activation`'s formula.
extension CUDABackend {
    public func linears(_ x: Tensor, _ layers: [(weight: Tensor, bias: Tensor?, output: Tensor)]) {
        for layer in layers { checkLinear(x, weight: layer.weight, bias: layer.bias, into: layer.output) }
        let (n, k) = (x.shape[0], x.shape[1])
        let xa = address(x, "x")
        let weights = layers.map { address($0.weight, "weight") }
        let weightBytes = layers.reduce(0) { $0 + $1.weight.byteCount }
        guard let kernel = SkinnyLinearKernels.linearsKernel(n: n, k: k, x: x.dtype, weights: layers.map(\.weight.dtype),
                                                            weightBytes: weightBytes, addresses: [xa] + weights) else {
            for layer in layers { linear(x, weight: layer.weight, bias: layer.bias, into: layer.output) }
            return
        }
        let targets = layers.indices.map { i in
            (weight: weights[i], bias: layers[i].bias.map { address($0, "bias") } ?? 0, output: address(layers[i].output, "y"),
             columns: layers[i].weight.shape[0])
        }
        perform("linears") {
            let perLaunch = SkinnyLinearKernels.maxLayersPerLaunch
            for start in stride(from: 0, to: targets.count, by: perLaunch) {
                var arguments: [KernelArgument] = [.address(xa), .int32(Int32(n)), .int32(Int32(k))]
                var columns = 0
                for i in start..<(start + perLaunch) {
                    // Missing layers take no columns.
                    let t = i < targets.count ? targets[i] : (weight: 0, bias: 0, output: 0, columns: 0)
                    arguments += [.address(t.weight), .address(t.bias), .address(t.output), .int32(Int32(t.columns))]
                    columns += t.columns
                }
                if columns == 0 { continue }
                try launchSkinny(kernel, columns: columns, rows: n, arguments)
            }
        }
    }

    public func linearActivation(_ x: Tensor, weight: Tensor, bias: Tensor?, activation: Activation, into y: Tensor) throws(ComputeError) {
        checkLinear(x, weight: weight, bias: bias, into: y, output: y.dtype)
        let (n, k, o) = (x.shape[0], x.shape[1], weight.shape[0])
        let (xa, wa, ya) = (address(x, "x"), address(weight, "weight"), address(y, "y"))
        guard let kernel = SkinnyLinearKernels.linearActivationKernel(n: n, k: k, x: x.dtype, weight: weight.dtype, output: y.dtype,
                                                                     weightBytes: weight.byteCount, addresses: [xa, wa]) else {
            return try unfusedLinearActivation(x, weight: weight, bias: bias, activation: activation, into: y)
        }
        let ba = bias.map { address($0, "bias") } ?? 0
        if o == 0 { return }
        perform("linearActivation") {
            try launchSkinny(kernel, columns: o, rows: n,
                             [.address(xa), .address(wa), .address(ba), .address(ya), .int32(Int32(n)), .int32(Int32(k)), .int32(Int32(o)),
                              .int32(ElementwiseKernels.code(of: activation))])
        }
    }

    public func gatedLinear(_ x: Tensor, gate: Tensor, gateBias: Tensor?, up: Tensor, upBias: Tensor?, into y: Tensor) throws(ComputeError) {
        checkLinear(x, weight: gate, bias: gateBias, into: y, output: y.dtype)
        checkLinear(x, weight: up, bias: upBias, into: y, output: y.dtype)
        let (n, k, o) = (x.shape[0], x.shape[1], gate.shape[0])
        let (xa, ga, ua, ya) = (address(x, "x"), address(gate, "gate"), address(up, "up"), address(y, "y"))
        guard let kernel = SkinnyLinearKernels.gatedKernel(n: n, k: k, x: x.dtype, gate: gate.dtype, up: up.dtype, output: y.dtype,
                                                          weightBytes: gate.byteCount + up.byteCount, addresses: [xa, ga, ua]) else {
            return try unfusedGatedLinear(x, gate: gate, gateBias: gateBias, up: up, upBias: upBias, into: y)
        }
        let (gba, uba) = (gateBias.map { address($0, "gate bias") } ?? 0, upBias.map { address($0, "up bias") } ?? 0)
        if o == 0 { return }
        perform("gatedLinear") {
            try launchSkinny(kernel, columns: o, rows: n,
                             [.address(xa), .address(ga), .address(gba), .address(ua), .address(uba), .address(ya),
                              .int32(Int32(n)), .int32(Int32(k)), .int32(Int32(o))])
        }
    }

    /// A skinny kernel over `columns` output columns (a warp each) and `rows` rows of x. On the device's thread.
    func launchSkinny(_ kernel: String, columns: Int, rows: Int, _ arguments: [KernelArgument]) throws {
        let warps = SkinnyLinearKernels.warps
        try launch(kernel, grid: ((columns + warps - 1) / warps, (rows + SkinnyLinearKernels.rows - 1) / SkinnyLinearKernels.rows, 1),
                   block: (32 * warps, 1, 1), arguments)
    }
}

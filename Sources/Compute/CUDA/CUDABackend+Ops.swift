import Foundation
/// The `ComputeBackend` op set on the GPU. Each op checks shapes on the host, then queues kernels.
extension CUDABackend {
    public func zeros(_ shape: [Int], dtype: DType) throws(ComputeError) -> Tensor {
        let tensor = try empty(shape, dtype: dtype)
        let (address, bytes) = (address(tensor, "zeros"), tensor.byteCount)
        do {
            try cudaDevice.sync { () throws in
                trainingState.operation &+= 1  // a write: cached conversions of this memory are stale
                try CUDAError.check(driver.cuMemsetD8Async(address, 0, bytes, stream.handle), "cuMemsetD8Async")
            }
        } catch {
            throw ComputeError("cannot zero \(bytes) bytes on \(device.uuid): \(error)")
        }
        return tensor
    }

    /// Biases in cuBLASLt's epilogue (`COLOCATE_BIAS_EPILOGUE=0`: a fill pass then an accumulating GEMM).
    static let biasEpilogue = ProcessInfo.processInfo.environment["COLOCATE_BIAS_EPILOGUE"] != "0"

    /// Checks the shapes and types of `linear` (and of its fused forms, whose y may be 16-bit): x [N, K]
    /// f32 or the weight's type, weight [O, K], bias [O], y [N, O] of `output`.
    func checkLinear(_ x: Tensor, weight: Tensor, bias: Tensor?, into y: Tensor, output: DType = .f32) {
        precondition(x.rank == 2 && weight.rank == 2 && y.rank == 2, "linear of \(x) by \(weight) into \(y)")
        let (n, k, o) = (x.shape[0], x.shape[1], weight.shape[0])
        precondition(weight.shape[1] == k && y.shape == [n, o], "linear of \(x.shape) by \(weight.shape) into \(y.shape)")
        precondition((x.dtype == .f32 || x.dtype == weight.dtype) && y.dtype == output,
                     "linear takes f32 activations (or operands of the weight's type) and makes \(output)")
        if let bias { precondition(bias.count == o, "bias \(bias.shape) for \(o) outputs") }
    }

    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, into y: Tensor) {
        checkLinear(x, weight: weight, bias: bias, into: y)
        let (n, k, o) = (x.shape[0], x.shape[1], weight.shape[0])
        let (xa, wa, ya) = (address(x, "x"), address(weight, "weight"), address(y, "y"))
        let ba = bias.map { address($0, "bias") }
        if n == 0 || o == 0 { return }
        if SkinnyLinearKernels.applies(n: n, k: k, weightBytes: weight.byteCount, addresses: [xa, wa]) {
            perform("linear") {
                try launchSkinny("skinny_linear_\(Self.kernelSuffix(weight.dtype))_x\(Self.kernelSuffix(x.dtype))", columns: o, rows: n,
                                 [.address(xa), .address(wa), .address(ba ?? 0), .address(ya), .int32(Int32(n)), .int32(Int32(k)), .int32(Int32(o))])
            }
            return
        }
        perform("linear") {
            // 16-bit weights: x rounded to their type, reusing the copy the previous op made of the same
            // memory (q, k and v read one x).
            let operand = x.dtype == weight.dtype ? xa : try gemmOperands([(xa, n * k)], dtype: weight.dtype, writes: [(ya, y.byteCount)])[0]
            // A bias goes in cuBLASLt's epilogue where it has a kernel for it; otherwise it is written
            // into y first and the GEMM accumulates onto it.
            // A 16-bit bias is added from its f32 copy of this step (``refreshBiasCopies(_:rows:)``) when there
            // is one: cuBLASLt has no epilogue taking it as it is with an f32 output.
            if let bias, let ba, Self.biasEpilogue {
                let copy = weight.dtype == .bf16 ? biasCopy(of: ba) : nil
                let (epilogueBias, biasType) = copy.map { ($0, DType.f32) } ?? (ba, bias.dtype)
                if try gemm.matmul(w: wa, x: operand, y: ya, bias: epilogueBias, biasType: biasType, rows: n, outputs: o, inputs: k,
                                   abType: weight.dtype, stream: stream.handle) {
                    return
                }
            }
            if let bias, let ba {
                try launch("fill_rows_\(Self.kernelSuffix(bias.dtype))", grid: (min((o + 255) / 256, 1024), min(n, 65535), 1),
                           block: (256, 1, 1), [.address(ba), .address(ya), .int64(Int64(n)), .int64(Int64(o))])
            }
            try gemm.matmul(w: wa, x: operand, y: ya, rows: n, outputs: o, inputs: k, abType: weight.dtype,
                            beta: bias == nil ? 0 : 1, stream: stream.handle)
        }
    }

    public func embedding(ids: [Int32], table: Tensor, into y: Tensor, accumulate: Bool) {
        precondition(table.rank == 2 && y.rank == 2 && y.shape == [ids.count, table.shape[1]] && y.dtype == .f32,
                     "embedding of \(ids.count) ids from \(table) into \(y)")
        let (vocabulary, hidden) = (table.shape[0], table.shape[1])
        let (ta, ya) = (address(table, "table"), address(y, "y"))
        if ids.isEmpty || hidden == 0 { return }
        perform("embedding") {
            if let bad = ids.first(where: { $0 < 0 || Int($0) >= vocabulary }) {
                throw ComputeError("token id \(bad) is outside the vocabulary of \(vocabulary)")
            }
            try launchEmbedding(ids: upload(ids), count: ids.count, table: ta, dtype: table.dtype, hidden: hidden, into: ya, accumulate: accumulate)
        }
    }

    public func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float, into y: Tensor) {
        let hidden = x.shape.last ?? 0
        precondition(x.shape == y.shape && x.dtype == .f32 && y.dtype == .f32 && weight.count == hidden && bias.count == hidden
                     && weight.dtype == bias.dtype, "layer norm of \(x) with \(weight), \(bias) into \(y)")
        let rows = hidden == 0 ? 0 : x.count / hidden
        let (xa, wa, ba, ya) = (address(x, "x"), address(weight, "weight"), address(bias, "bias"), address(y, "y"))
        if rows == 0 { return }
        perform("layerNorm") {
            try launch("layernorm_\(Self.kernelSuffix(weight.dtype))", grid: (rows, 1, 1), block: (256, 1, 1),
                       [.address(xa), .address(wa), .address(ba), .address(ya), .int32(Int32(hidden)), .float(eps)])
        }
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, into y: Tensor) {
        let hidden = x.shape.last ?? 0
        precondition(x.shape == y.shape && x.dtype == .f32 && y.dtype == .f32 && weight.count == hidden,
                     "RMS norm of \(x) with \(weight) into \(y)")
        let rows = hidden == 0 ? 0 : x.count / hidden
        let (xa, wa, ya) = (address(x, "x"), address(weight, "weight"), address(y, "y"))
        if rows == 0 { return }
        perform("rmsNorm") {
            try launch("rmsnorm_\(Self.kernelSuffix(weight.dtype))", grid: (rows, 1, 1), block: (256, 1, 1),
                       [.address(xa), .address(wa), .address(ya), .int32(Int32(hidden)), .float(eps)])
        }
    }

    public func residualLayerNorm(_ x: Tensor, adding residual: Tensor?, weight: Tensor, bias: Tensor, eps: Float, into y: Tensor) {
        residualNorm("layernorm", x, adding: residual, weight: weight, bias: bias, eps: eps, into: y)
    }

    public func residualRMSNorm(_ x: Tensor, adding residual: Tensor?, weight: Tensor, eps: Float, into y: Tensor) {
        residualNorm("rmsnorm", x, adding: residual, weight: weight, bias: nil, eps: eps, into: y)
    }

    private func residualNorm(_ kind: String, _ x: Tensor, adding residual: Tensor?, weight: Tensor, bias: Tensor?, eps: Float, into y: Tensor) {
        let hidden = x.shape.last ?? 0
        precondition(x.shape == y.shape && x.dtype == .f32 && y.dtype.isFloatingPoint && weight.count == hidden
                     && (bias.map { $0.count == hidden && $0.dtype == weight.dtype } ?? true)
                     && (residual.map { $0.count == x.count && $0.dtype == .f32 } ?? true),
                     "residual \(kind) of \(x) + \(residual.map { "\($0)" } ?? "nothing") with \(weight) into \(y)")
        let rows = hidden == 0 ? 0 : x.count / hidden
        let (xa, wa, ya) = (address(x, "x"), address(weight, "weight"), address(y, "y"))
        precondition(xa != ya, "residual \(kind): y must not alias x")
        let ra = residual.map { address($0, "residual") } ?? 0
        let ba = bias.map { address($0, "bias") }
        if rows == 0 { return }
        perform(kind) {
            var arguments: [KernelArgument] = [.address(xa), .address(ra), .address(wa)]
            if let ba { arguments.append(.address(ba)) }
            arguments += [.address(ya), .int32(Int32(hidden)), .float(eps)]
            try launch("residual_\(kind)_\(Self.kernelSuffix(weight.dtype))_to_\(Self.kernelSuffix(y.dtype))", grid: (rows, 1, 1),
                       block: (256, 1, 1), arguments)
        }
    }

    public func rotary(_ x: Tensor, positions: [Int32], embedding: RotaryEmbedding) {
        precondition(x.rank == 3 && x.shape[0] == positions.count && x.shape[2] % 2 == 0 && x.dtype == .f32,
                     "rotary of \(x) at \(positions.count) positions")
        precondition(embedding.inverseFrequencies.count == x.shape[2] / 2,
                     "rotary: \(embedding.inverseFrequencies.count) inverse frequencies for head dimension \(x.shape[2])")
        let (tokens, heads, headDim) = (x.shape[0], x.shape[1], x.shape[2])
        let xa = address(x, "x")
        if x.count == 0 { return }
        perform("rotary") {
            // One upload (the scratch holds one array at a time): the positions, then the inverse
            // frequencies' bit patterns.
            let packed = positions + embedding.inverseFrequencies.map { Int32(bitPattern: $0.bitPattern) }
            let positionsAddress = try upload(packed)
            try launchRotary(x: xa, tokens: tokens, heads: heads, headDim: headDim, positions: positionsAddress,
                             frequencies: positionsAddress + UInt64(tokens * MemoryLayout<Int32>.stride), scaling: embedding.attentionScaling)
        }
    }

    public func activation(_ kind: Activation, _ x: Tensor, into y: Tensor) {
        precondition(x.count == y.count && x.dtype == .f32 && y.dtype.isFloatingPoint, "activation of \(x) into \(y)")
        let (xa, ya) = (address(x, "x"), address(y, "y"))
        if x.count == 0 { return }
        perform("activation") {
            try launch(ElementwiseKernels.name("activation_f32", writing: y.dtype), grid: (Self.blocks(x.count), 1, 1), block: (256, 1, 1),
                       [.address(xa), .address(ya), .int64(Int64(x.count)), .int32(ElementwiseKernels.code(of: kind))])
        }
    }

    public func swiGLU(gate: Tensor, up: Tensor, into y: Tensor) {
        precondition(gate.count == up.count && up.count == y.count && gate.dtype == .f32 && up.dtype == .f32 && y.dtype.isFloatingPoint,
                     "SwiGLU of \(gate), \(up) into \(y)")
        let (ga, ua, ya) = (address(gate, "gate"), address(up, "up"), address(y, "y"))
        if y.count == 0 { return }
        perform("swiGLU") {
            try launch(ElementwiseKernels.name("swiglu_f32", writing: y.dtype), grid: (Self.blocks(y.count), 1, 1), block: (256, 1, 1),
                       [.address(ga), .address(ua), .address(ya), .int64(Int64(y.count))])
        }
    }

    public func add(_ a: Tensor, _ b: Tensor, into y: Tensor) {
        precondition(a.count == b.count && b.count == y.count && [a.dtype, b.dtype, y.dtype].allSatisfy { $0 == .f32 },
                     "add of \(a), \(b) into \(y)")
        let (aa, ba, ya) = (address(a, "a"), address(b, "b"), address(y, "y"))
        if y.count == 0 { return }
        perform("add") {
            try launch("add_f32", grid: (Self.blocks(y.count), 1, 1), block: (256, 1, 1),
                       [.address(aa), .address(ba), .address(ya), .int64(Int64(y.count))])
        }
    }

    public func writeKV(k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, layout: AttentionLayout) {
        precondition(layout.positionOfToken.count == k.shape.first, "writeKV of \(k) with \(layout.positionOfToken.count) positions")
        guard let step = checkedStep(layout, cacheSlots: kCache.shape.first ?? 0, op: "writeKV") else { return }
        writeKV(k: k, v: v, kCache: kCache, vCache: vCache, step: step)
    }

    public func attention(q: Tensor, kCache: Tensor, vCache: Tensor, layout: AttentionLayout, scale: Float, into out: Tensor) {
        precondition(layout.positionOfToken.count == q.shape.first && layout.sequenceOfToken.count == q.shape.first,
                     "attention of \(q) with \(layout.positionOfToken.count) positions")
        guard let step = checkedStep(layout, cacheSlots: kCache.shape.first ?? 0, op: "attention") else { return }
        attention(q: q, kCache: kCache, vCache: vCache, step: step, scale: scale, into: out)
    }

    /// A layout from the host-array ops as the step-indexed ops take it, once checked against a cache of
    /// `cacheSlots` rows; nil (and the op's failure kept) when it points outside the cache or its tables.
    private func checkedStep(_ layout: AttentionLayout, cacheSlots: Int, op: String) -> StepIndices? {
        let blocks = layout.blockSize > 0 ? cacheSlots / layout.blockSize : 0
        do {
            for (t, sequence) in layout.sequenceOfToken.enumerated() {
                guard sequence >= 0 && Int(sequence) < layout.blockTables.count else {
                    throw ComputeError("token \(t) belongs to sequence \(sequence), which has no block table")
                }
                let position = Int(layout.positionOfToken[t])
                guard position >= 0 && layout.blockSize > 0 && position / layout.blockSize < layout.blockTables[Int(sequence)].count else {
                    throw ComputeError("position \(position) of sequence \(sequence) is beyond its block table")
                }
            }
            for table in layout.blockTables {
                if let bad = table.first(where: { $0 < 0 || Int($0) >= blocks }) {
                    throw ComputeError("KV block \(bad) is outside the cache of \(blocks) blocks")
                }
            }
            let tokens = [Int32](repeating: 0, count: layout.positionOfToken.count)
            return try prepareStep(tokens: tokens, layout: layout, logitRows: [], positionOffset: 0, rotary: nil)
        } catch {
            fail(op, error)
            return nil
        }
    }

    public func softmax(_ x: Tensor, into y: Tensor) { softmax(x, scale: 1, logarithm: false, into: y) }
    public func logSoftmax(_ x: Tensor, into y: Tensor) { softmax(x, scale: 1, logarithm: true, into: y) }

    /// Softmax (or log-softmax) of `scale · x` over the last dimension; `scale` is 1 / temperature.
    public func softmax(_ x: Tensor, scale: Float, logarithm: Bool, into y: Tensor) {
        let cols = x.shape.last ?? 0
        precondition(x.shape == y.shape && x.dtype == .f32 && y.dtype == .f32, "softmax of \(x) into \(y)")
        let rows = cols == 0 ? 0 : x.count / cols
        let (xa, ya) = (address(x, "x"), address(y, "y"))
        if rows == 0 { return }
        perform(logarithm ? "logSoftmax" : "softmax") {
            try launch(logarithm ? "log_softmax_f32" : "softmax_f32", grid: (rows, 1, 1), block: (256, 1, 1),
                       [.address(xa), .address(ya), .int32(Int32(cols)), .float(scale)])
        }
    }
}

/// The `ComputeBackend` op set on the GPU. Each op checks shapes on the host, then queues kernels.
extension CUDABackend {
    public func zeros(_ shape: [Int], dtype: DType) throws(ComputeError) -> Tensor {
        let bytes = shape.reduce(1, *) * dtype.byteSize
        // With the pool on (training), blocks freed by earlier steps are reused: no cuMemAlloc / cuMemFree
        // (which synchronises the device) on the hot path.
        let buffer: CUDABuffer
        if let pool = trainingState.pool { buffer = try pool.allocate(byteCount: bytes) } else { buffer = try allocator.allocate(byteCount: bytes) }
        do {
            try cudaDevice.sync { () throws in
                trainingState.operation &+= 1  // a write: cached conversions of this memory are stale
                try CUDAError.check(driver.cuMemsetD8Async(buffer.deviceAddress, 0, buffer.byteCount, stream.handle), "cuMemsetD8Async")
            }
        } catch {
            throw ComputeError("cannot zero \(buffer.byteCount) bytes on \(device.uuid): \(error)")
        }
        return buffer.tensor(dtype: dtype, shape: shape)
    }

    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, into y: Tensor) {
        precondition(x.rank == 2 && weight.rank == 2 && y.rank == 2, "linear of \(x) by \(weight) into \(y)")
        let (n, k, o) = (x.shape[0], x.shape[1], weight.shape[0])
        precondition(weight.shape[1] == k && y.shape == [n, o], "linear of \(x.shape) by \(weight.shape) into \(y.shape)")
        precondition((x.dtype == .f32 || x.dtype == weight.dtype) && y.dtype == .f32,
                     "linear takes f32 activations (or operands of the weight's type) and makes f32")
        if let bias { precondition(bias.count == o, "bias \(bias.shape) for \(o) outputs") }
        let (xa, wa, ya) = (address(x, "x"), address(weight, "weight"), address(y, "y"))
        let ba = bias.map { address($0, "bias") }
        if n == 0 || o == 0 { return }
        if SkinnyLinearKernels.applies(n: n, k: k, weightBytes: weight.byteCount, addresses: [xa, wa]) {
            perform("linear") {
                let warps = SkinnyLinearKernels.warps
                try launch("skinny_linear_\(Self.kernelSuffix(weight.dtype))_x\(Self.kernelSuffix(x.dtype))",
                           grid: ((o + warps - 1) / warps, (n + SkinnyLinearKernels.rows - 1) / SkinnyLinearKernels.rows, 1),
                           block: (32 * warps, 1, 1),
                           [.address(xa), .address(wa), .address(ba ?? 0), .address(ya), .int32(Int32(n)), .int32(Int32(k)), .int32(Int32(o))])
            }
            return
        }
        perform("linear") {
            if let bias, let ba {
                try launch("fill_rows_\(Self.kernelSuffix(bias.dtype))", grid: (min((o + 255) / 256, 1024), min(n, 65535), 1),
                           block: (256, 1, 1), [.address(ba), .address(ya), .int64(Int64(n)), .int64(Int64(o))])
            }
            // 16-bit weights: x rounded to their type, reusing the copy the previous op made of the same
            // memory (q, k and v read one x).
            let operand = x.dtype == weight.dtype ? xa : try gemmOperands([(xa, n * k)], dtype: weight.dtype, writes: [(ya, y.byteCount)])[0]
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
            let idsAddress = try upload(ids)
            try launch("embedding_\(Self.kernelSuffix(table.dtype))", grid: (min((hidden + 255) / 256, 1024), min(ids.count, 65535), 1),
                       block: (256, 1, 1),
                       [.address(idsAddress), .address(ta), .address(ya), .int32(Int32(ids.count)), .int32(Int32(hidden)), .int32(accumulate ? 1 : 0)])
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
            let frequenciesAddress = positionsAddress + UInt64(tokens * MemoryLayout<Int32>.stride)
            try launch("rotary_f32", grid: (Self.blocks(x.count / 2), 1, 1), block: (256, 1, 1),
                       [.address(xa), .address(positionsAddress), .address(frequenciesAddress), .int32(Int32(tokens)),
                        .int32(Int32(heads)), .int32(Int32(headDim)), .float(embedding.attentionScaling)])
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
        precondition(k.shape == v.shape && k.rank == 3 && kCache.shape == vCache.shape && kCache.rank == 3
                     && kCache.dtype == vCache.dtype && Array(kCache.shape.dropFirst()) == Array(k.shape.dropFirst())
                     && k.dtype == .f32 && v.dtype == .f32 && layout.positionOfToken.count == k.shape[0],
                     "writeKV of \(k), \(v) into \(kCache), \(vCache)")
        let (tokens, rowElements, slotCount) = (k.shape[0], k.shape[1] * k.shape[2], kCache.shape[0])
        let (ka, va, kca, vca) = (address(k, "k"), address(v, "v"), address(kCache, "kCache"), address(vCache, "vCache"))
        if tokens == 0 || rowElements == 0 { return }
        perform("writeKV") {
            let slots = (0..<tokens).map { Int32(layout.slot(ofToken: $0)) }
            if let bad = slots.first(where: { $0 < 0 || Int($0) >= slotCount }) {
                throw ComputeError("KV cache slot \(bad) is outside the cache of \(slotCount) slots")
            }
            let slotsAddress = try upload(slots)
            try launch("write_kv_\(Self.kernelSuffix(kCache.dtype))", grid: (min((rowElements + 255) / 256, 1024), min(tokens, 65535), 1),
                       block: (256, 1, 1),
                       [.address(ka), .address(va), .address(kca), .address(vca), .address(slotsAddress),
                        .int32(Int32(tokens)), .int32(Int32(rowElements))])
        }
    }

    public func attention(q: Tensor, kCache: Tensor, vCache: Tensor, layout: AttentionLayout, scale: Float, into out: Tensor) {
        precondition(q.rank == 3 && q.shape == out.shape && kCache.shape == vCache.shape && kCache.rank == 3
                     && kCache.dtype == vCache.dtype && kCache.shape[2] == q.shape[2] && q.dtype == .f32 && out.dtype == .f32
                     && layout.positionOfToken.count == q.shape[0] && layout.sequenceOfToken.count == q.shape[0],
                     "attention of \(q) over \(kCache) into \(out)")
        let (tokens, heads, headDim) = (q.shape[0], q.shape[1], q.shape[2])
        let (kvHeads, slotCount) = (kCache.shape[1], kCache.shape[0])
        precondition(kvHeads > 0 && heads % kvHeads == 0, "\(heads) query heads over \(kvHeads) KV heads")
        precondition(headDim <= AttentionKernels.maxHeadDim, "head dimension \(headDim) > \(AttentionKernels.maxHeadDim)")
        let (qa, kca, vca, oa) = (address(q, "q"), address(kCache, "kCache"), address(vCache, "vCache"), address(out, "out"))
        if tokens == 0 { return }
        perform("attention") {
            let blocks = layout.blockSize > 0 ? slotCount / layout.blockSize : 0
            var meta = layout.positionOfToken
            meta.reserveCapacity(2 * tokens + layout.blockTables.reduce(0) { $0 + $1.count })
            var starts: [Int32] = []
            var offset: Int32 = 0
            for table in layout.blockTables {
                starts.append(offset)
                offset += Int32(table.count)
            }
            for t in 0..<tokens {
                let sequence = Int(layout.sequenceOfToken[t])
                guard sequence >= 0 && sequence < layout.blockTables.count else {
                    throw ComputeError("token \(t) belongs to sequence \(sequence), which has no block table")
                }
                let position = Int(layout.positionOfToken[t])
                guard position >= 0 && layout.blockSize > 0 && position / layout.blockSize < layout.blockTables[sequence].count else {
                    throw ComputeError("position \(position) of sequence \(sequence) is beyond its block table")
                }
                meta.append(starts[sequence])
            }
            for table in layout.blockTables {
                if let bad = table.first(where: { $0 < 0 || Int($0) >= blocks }) {
                    throw ComputeError("KV block \(bad) is outside the cache of \(blocks) blocks")
                }
                meta += table
            }
            let metaAddress = try upload(meta)
            try launch(AttentionKernels.name(cache: kCache.dtype, writing: .f32, headDim: headDim), grid: (tokens, heads, 1),
                       block: (32 * AttentionKernels.warps(tokens: tokens, heads: heads), 1, 1),
                       [.address(qa), .address(kca), .address(vca), .address(oa), .address(metaAddress),
                        .int32(Int32(tokens)), .int32(Int32(heads)), .int32(Int32(kvHeads)), .int32(Int32(headDim)),
                        .int32(Int32(layout.blockSize)), .float(scale)])
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

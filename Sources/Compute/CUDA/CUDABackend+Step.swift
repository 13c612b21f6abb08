import Foundation

/// The indexing ops of a step (``StepIndices``) on the GPU: the step's arrays go up in one copy, and the
/// embedding, rotary, KV-write, attention and row-gather kernels read them there. No op of a step then
/// reads host memory, which is what lets ``CUDAStepGraphs`` capture a step once and replay it.
extension CUDABackend {
    /// The step's arrays packed (``StepIndices/packed(tableWidth:)``), uploaded by the first op that reads
    /// them. A recorded graph keeps one as the buffer it reads; a replayed step's words are written into
    /// that one instead of being uploaded here.
    /// The tables take the next power of two (≥ 4) of the longest table each, so that steps of one batch
    /// size share a shape while their sequences grow. Touched on the device's thread only.
    final class DeviceStepIndices: @unchecked Sendable {
        let packed: PackedStepIndices
        private var base: UInt64?
        private var storage: Tensor?

        init(packed: PackedStepIndices) { self.packed = packed }

        /// Device address of word `offset`, uploading the words first if no op has yet.
        func address(ofWord offset: Int, on backend: CUDABackend) throws -> UInt64 {
            if base == nil {
                let made = try backend.empty([max(packed.words.count, 1)], dtype: .i32)
                storage = made
                let address = backend.address(made, "step indices")
                try backend.write(packed.words, to: address)
                base = address
            }
            return base! + UInt64(offset * MemoryLayout<Int32>.stride)
        }
    }

    static func tableWidth(for layout: AttentionLayout) -> Int {
        let longest = layout.blockTables.map(\.count).max() ?? 1
        var width = 4
        while width < longest { width *= 2 }
        return width
    }

    public func empty(_ shape: [Int], dtype: DType) throws(ComputeError) -> Tensor {
        let bytes = shape.reduce(1, *) * dtype.byteSize
        let buffer: CUDABuffer
        if let pool = trainingState.pool { buffer = try pool.allocate(byteCount: bytes) } else { buffer = try allocator.allocate(byteCount: bytes) }
        return buffer.tensor(dtype: dtype, shape: shape)
    }

    public func prepareStep(tokens: [Int32], layout: AttentionLayout, logitRows: [Int32], positionOffset: Int32,
                            rotary: RotaryEmbedding?) throws -> StepIndices {
        let step = StepIndices(tokens: tokens, layout: layout, logitRows: logitRows, positionOffset: positionOffset, rotary: rotary)
        return step.with(backendCopy: DeviceStepIndices(packed: step.packed(tableWidth: Self.tableWidth(for: layout))))
    }

    /// Queues a copy of `words` to `address` on the stream (through the pinned staging ring).
    func write(_ words: [Int32], to address: UInt64) throws {
        try cudaDevice.sync {
            let source = try stage(words, bytes: max(words.count * MemoryLayout<Int32>.stride, 4))
            try CUDAError.check(driver.cuMemcpyHtoDAsync(address, source, words.count * MemoryLayout<Int32>.stride, stream.handle),
                                "cuMemcpyHtoDAsync_v2")
        }
    }

    /// Paged attention by ``GroupedAttentionKernels`` where it applies (`COLOCATE_ATTENTION_KERNEL=lanes`
    /// keeps every step on ``AttentionKernels``, to compare).
    static let groupedAttention = ProcessInfo.processInfo.environment["COLOCATE_ATTENTION_KERNEL"] != "lanes"

    /// The device copy of a step's indices, or nil for indices made by another backend.
    private func device(_ step: StepIndices) -> DeviceStepIndices? { step.backendCopy as? DeviceStepIndices }

    public func embedTokens(_ step: StepIndices, table: Tensor, into y: Tensor) {
        guard let d = device(step) else { return embedding(ids: step.tokens, table: table, into: y, accumulate: false) }
        gather(d, word: d.packed.tokenIds, count: d.packed.tokens, table: table, into: y, accumulate: false)
    }

    public func embedPositions(_ step: StepIndices, table: Tensor, into y: Tensor) {
        guard let d = device(step) else {
            return embedding(ids: step.layout.positionOfToken.map { $0 &+ step.positionOffset }, table: table, into: y, accumulate: true)
        }
        gather(d, word: d.packed.shiftedPositions, count: d.packed.tokens, table: table, into: y, accumulate: true)
    }

    public func gatherLogitRows(_ step: StepIndices, from x: Tensor, into y: Tensor) {
        guard let d = device(step) else { return embedding(ids: step.logitRows, table: x, into: y, accumulate: false) }
        gather(d, word: d.packed.rows, count: d.packed.logitRows, table: x, into: y, accumulate: false)
    }

    /// `y[n] (+)= table[ids[n]]` with the ids at word `word` of the step's indices (checked when the step was made).
    private func gather(_ d: DeviceStepIndices, word: Int, count: Int, table: Tensor, into y: Tensor, accumulate: Bool) {
        precondition(table.rank == 2 && y.rank == 2 && y.shape == [count, table.shape[1]] && y.dtype == .f32,
                     "gather of \(count) rows from \(table) into \(y)")
        let hidden = table.shape[1]
        let (ta, ya) = (address(table, "table"), address(y, "y"))
        if count == 0 || hidden == 0 { return }
        perform("embedding") {
            try launchEmbedding(ids: d.address(ofWord: word, on: self), count: count, table: ta, dtype: table.dtype, hidden: hidden,
                                into: ya, accumulate: accumulate)
        }
    }

    /// `embedding_T`: rows `ids[0..<count]` of a table (device addresses) into y. On the device's thread.
    func launchEmbedding(ids: UInt64, count: Int, table: UInt64, dtype: DType, hidden: Int, into y: UInt64, accumulate: Bool) throws {
        try launch("embedding_\(Self.kernelSuffix(dtype))", grid: (min((hidden + 255) / 256, 1024), min(count, 65535), 1),
                   block: (256, 1, 1),
                   [.address(ids), .address(table), .address(y), .int32(Int32(count)), .int32(Int32(hidden)), .int32(accumulate ? 1 : 0)])
    }

    /// `rotary_f32` of x ([tokens, heads, headDim]), and of y ([tokens, yHeads, headDim]) when given, at
    /// device positions with device inverse frequencies.
    func launchRotary(x: UInt64, y: UInt64 = 0, tokens: Int, heads: Int, yHeads: Int = 0, headDim: Int, positions: UInt64,
                      frequencies: UInt64, scaling: Float) throws {
        try launch("rotary_f32", grid: (Self.blocks(tokens * (heads + yHeads) * headDim / 2), 1, 1), block: (256, 1, 1),
                   [.address(x), .address(y), .address(positions), .address(frequencies), .int32(Int32(tokens)), .int32(Int32(heads)),
                    .int32(Int32(yHeads)), .int32(Int32(headDim)), .float(scaling)])
    }

    public func rotary(_ x: Tensor, step: StepIndices, embedding: RotaryEmbedding) {
        guard let d = device(step), step.rotary == embedding else {
            return rotary(x, positions: step.layout.positionOfToken, embedding: embedding)
        }
        precondition(x.rank == 3 && x.shape[0] == d.packed.tokens && x.shape[2] % 2 == 0 && x.dtype == .f32
                     && embedding.inverseFrequencies.count == x.shape[2] / 2, "rotary of \(x) at \(d.packed.tokens) positions")
        let (tokens, heads, headDim) = (x.shape[0], x.shape[1], x.shape[2])
        let xa = address(x, "x")
        if x.count == 0 { return }
        perform("rotary") {
            try launchRotary(x: xa, tokens: tokens, heads: heads, headDim: headDim, positions: d.address(ofWord: d.packed.positions, on: self),
                             frequencies: d.address(ofWord: d.packed.inverseFrequencies, on: self), scaling: embedding.attentionScaling)
        }
    }

    public func rotary(queries q: Tensor, keys k: Tensor, step: StepIndices, embedding: RotaryEmbedding) {
        guard let d = device(step), step.rotary == embedding else {
            rotary(q, positions: step.layout.positionOfToken, embedding: embedding)
            return rotary(k, positions: step.layout.positionOfToken, embedding: embedding)
        }
        precondition(q.rank == 3 && k.rank == 3 && q.shape[0] == d.packed.tokens && k.shape[0] == q.shape[0] && q.shape[2] == k.shape[2]
                     && q.shape[2] % 2 == 0 && q.dtype == .f32 && k.dtype == .f32 && embedding.inverseFrequencies.count == q.shape[2] / 2,
                     "rotary of \(q) and \(k) at \(d.packed.tokens) positions")
        let (tokens, heads, kvHeads, headDim) = (q.shape[0], q.shape[1], k.shape[1], q.shape[2])
        let (qa, ka) = (address(q, "q"), address(k, "k"))
        if q.count + k.count == 0 { return }
        perform("rotary") {
            try launchRotary(x: qa, y: ka, tokens: tokens, heads: heads, yHeads: kvHeads, headDim: headDim,
                             positions: d.address(ofWord: d.packed.positions, on: self),
                             frequencies: d.address(ofWord: d.packed.inverseFrequencies, on: self), scaling: embedding.attentionScaling)
        }
    }

    public func writeKV(k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, step: StepIndices) {
        guard let d = device(step) else { return writeKV(k: k, v: v, kCache: kCache, vCache: vCache, layout: step.layout) }
        precondition(k.shape == v.shape && k.rank == 3 && kCache.shape == vCache.shape && kCache.rank == 3
                     && kCache.dtype == vCache.dtype && Array(kCache.shape.dropFirst()) == Array(k.shape.dropFirst())
                     && k.dtype == .f32 && v.dtype == .f32 && d.packed.tokens == k.shape[0],
                     "writeKV of \(k), \(v) into \(kCache), \(vCache)")
        let (tokens, rowElements) = (k.shape[0], k.shape[1] * k.shape[2])
        let (ka, va, kca, vca) = (address(k, "k"), address(v, "v"), address(kCache, "kCache"), address(vCache, "vCache"))
        if tokens == 0 || rowElements == 0 { return }
        perform("writeKV") {
            try launch("write_kv_\(Self.kernelSuffix(kCache.dtype))", grid: (min((rowElements + 255) / 256, 1024), min(tokens, 65535), 1),
                       block: (256, 1, 1),
                       [.address(ka), .address(va), .address(kca), .address(vca), .address(d.address(ofWord: d.packed.slots, on: self)),
                        .int32(Int32(tokens)), .int32(Int32(rowElements))])
        }
    }

    public func attention(q: Tensor, kCache: Tensor, vCache: Tensor, step: StepIndices, scale: Float, into out: Tensor) {
        guard let d = device(step) else { return attention(q: q, kCache: kCache, vCache: vCache, layout: step.layout, scale: scale, into: out) }
        precondition(q.rank == 3 && q.shape == out.shape && kCache.shape == vCache.shape && kCache.rank == 3
                     && kCache.dtype == vCache.dtype && kCache.shape[2] == q.shape[2] && q.dtype == .f32 && out.dtype.isFloatingPoint
                     && d.packed.tokens == q.shape[0], "attention of \(q) over \(kCache) into \(out)")
        let (tokens, heads, headDim, kvHeads) = (q.shape[0], q.shape[1], q.shape[2], kCache.shape[1])
        precondition(kvHeads > 0 && heads % kvHeads == 0, "\(heads) query heads over \(kvHeads) KV heads")
        precondition(headDim <= AttentionKernels.maxHeadDim, "head dimension \(headDim) > \(AttentionKernels.maxHeadDim)")
        let (qa, kca, vca, oa) = (address(q, "q"), address(kCache, "kCache"), address(vCache, "vCache"), address(out, "out"))
        if tokens == 0 { return }
        if Self.groupedAttention, GroupedAttentionKernels.applies(headDim: headDim, cache: kCache.dtype, output: out.dtype,
                                                                   addresses: [kca, vca, oa]) {
            let plan = GroupedAttentionKernels.launch(tokens: tokens, heads: heads, kvHeads: kvHeads, headDim: headDim, cache: kCache.dtype,
                                                      multiprocessors: cudaDevice.properties.multiprocessorCount)
            perform("attention") {
                let meta = try d.address(ofWord: d.packed.positions, on: self)
                let partials = plan.splits == 1 ? 0 : try workspace(.attentionPartials, bytes: tokens * heads * plan.splits * (headDim + 2) * 4)
                let counters = plan.splits == 1 ? 0 : try workspace(.attentionCounters, bytes: tokens * kvHeads * plan.headChunks * 4, zeroed: true)
                try launch(plan.name, grid: (tokens, kvHeads * plan.headChunks, plan.splits), block: (32 * GroupedAttentionKernels.warps, 1, 1),
                           [.address(qa), .address(kca), .address(vca), .address(oa), .address(partials), .address(counters), .address(meta),
                            .int32(Int32(tokens)), .int32(Int32(heads)), .int32(Int32(kvHeads)), .int32(Int32(headDim)),
                            .int32(Int32(step.layout.blockSize)), .float(scale), .int32(Int32(plan.splits))])
            }
            return
        }
        perform("attention") {
            let meta = try d.address(ofWord: d.packed.positions, on: self)
            try launch(AttentionKernels.name(cache: kCache.dtype, writing: out.dtype, headDim: headDim), grid: (tokens, heads, 1),
                       block: (32 * AttentionKernels.warps(tokens: tokens, heads: heads), 1, 1),
                       [.address(qa), .address(kca), .address(vca), .address(oa), .address(meta),
                        .int32(Int32(tokens)), .int32(Int32(heads)), .int32(Int32(kvHeads)), .int32(Int32(headDim)),
                        .int32(Int32(step.layout.blockSize)), .float(scale)])
        }
    }
}

/// The op set on the host, in Swift: SIMD kernels (AVX2/FMA/F16C on x86-64) over `Parallel.width`
/// threads. Tensors must be host tensors; shapes and dtypes follow `ComputeBackend`'s contract, and a
/// violation (a bug in model code, not user input) stops the process with a message.
///
/// Weights, embedding tables and norm parameters may be f32, bf16 or f16; activations are f32.
/// `linear` also accepts row-strided views (`[rows, cols]` with unit column stride) for x, y and the
/// weight, so a column slice of a larger weight is used in place.
public struct CPUBackend: ComputeBackend {
    public let device: Device

    public init(device: Device = .host) {
        self.device = device
    }

    public func zeros(_ shape: [Int], dtype: DType) throws(ComputeError) -> Tensor {
        try Tensor.zeros(shape, dtype: dtype, device: device)
    }

    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, into y: Tensor) {
        precondition(weight.rank == 2 && weight.strides[1] == 1 && weight.dtype.isFloatingPoint,
                     "linear weight must be [out, in] with unit column stride, got \(weight) strides \(weight.strides)")
        let outFeatures = weight.shape[0], inFeatures = weight.shape[1]
        let xs = Self.matrix(x, columns: inFeatures, "linear input")
        let ys = Self.matrix(y, columns: outFeatures, "linear output")
        precondition(xs.rows == ys.rows, "linear: \(xs.rows) input rows but \(ys.rows) output rows")
        let body = { (biasPointer: UnsafePointer<Float>?) in
            CPUKernels.linear(
                x: xs.pointer, xRowStride: xs.rowStride,
                weight: UnsafeRawPointer(weight.rawPointer), weightType: weight.dtype, weightRowStride: weight.strides[0],
                bias: biasPointer, y: ys.pointer, yRowStride: ys.rowStride,
                rows: xs.rows, inFeatures: inFeatures, outFeatures: outFeatures)
        }
        if let bias {
            precondition(bias.count == outFeatures, "linear bias has \(bias.count) elements for \(outFeatures) outputs")
            CPUKernels.withFloats(bias) { body($0) }
        } else {
            body(nil)
        }
    }

    public func embedding(ids: [Int32], table: Tensor, into y: Tensor, accumulate: Bool) {
        precondition(table.rank == 2 && table.isContiguous && table.dtype.isFloatingPoint, "embedding table must be a contiguous [V, H] float tensor, got \(table)")
        Self.requireF32(y, "embedding output")
        precondition(y.count == ids.count * table.shape[1], "embedding output \(y.shape) for \(ids.count) ids of width \(table.shape[1])")
        ids.withUnsafeBufferPointer { ids in
            CPUKernels.embedding(ids: ids, table: UnsafeRawPointer(table.rawPointer), tableType: table.dtype,
                                 vocabulary: table.shape[0], width: table.shape[1],
                                 into: y.pointer(Float.self), accumulate: accumulate)
        }
    }

    public func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float, into y: Tensor) {
        let (rows, width) = Self.sameShapeRows(x, y, "layerNorm")
        precondition(weight.count == width && bias.count == width, "layerNorm parameters \(weight.shape), \(bias.shape) for width \(width)")
        CPUKernels.withFloats(weight) { w in
            CPUKernels.withFloats(bias) { b in
                CPUKernels.layerNorm(x.pointer(Float.self), rows: rows, width: width, weight: w, bias: b, eps: eps, into: y.pointer(Float.self))
            }
        }
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, into y: Tensor) {
        let (rows, width) = Self.sameShapeRows(x, y, "rmsNorm")
        precondition(weight.count == width, "rmsNorm weight \(weight.shape) for width \(width)")
        CPUKernels.withFloats(weight) { w in
            CPUKernels.rmsNorm(x.pointer(Float.self), rows: rows, width: width, weight: w, eps: eps, into: y.pointer(Float.self))
        }
    }

    public func rotary(_ x: Tensor, positions: [Int32], embedding: RotaryEmbedding) {
        Self.requireF32(x, "rotary input")
        precondition(x.rank == 3 && x.shape[0] == positions.count, "rotary input \(x.shape) must be [N, heads, headDim] with N = \(positions.count) positions")
        precondition(x.shape[2] % 2 == 0, "rotary head dimension \(x.shape[2]) must be even")
        precondition(embedding.inverseFrequencies.count == x.shape[2] / 2,
                     "rotary: \(embedding.inverseFrequencies.count) inverse frequencies for head dimension \(x.shape[2])")
        positions.withUnsafeBufferPointer { positions in
            embedding.inverseFrequencies.withUnsafeBufferPointer { inverseFrequencies in
                CPUKernels.rotary(x.pointer(Float.self), positions: positions, heads: x.shape[1], headDim: x.shape[2],
                                  inverseFrequencies: inverseFrequencies, attentionScaling: embedding.attentionScaling)
            }
        }
    }

    public func activation(_ kind: Activation, _ x: Tensor, into y: Tensor) {
        Self.requireF32(x, "activation input")
        Self.requireF32(y, "activation output")
        precondition(x.count == y.count, "activation of \(x.shape) into \(y.shape)")
        CPUKernels.activation(kind, x.pointer(Float.self), into: y.pointer(Float.self), count: x.count)
    }

    public func swiGLU(gate: Tensor, up: Tensor, into y: Tensor) {
        for (t, what) in [(gate, "swiGLU gate"), (up, "swiGLU up"), (y, "swiGLU output")] { Self.requireF32(t, what) }
        precondition(gate.count == up.count && up.count == y.count, "swiGLU of \(gate.shape) and \(up.shape) into \(y.shape)")
        CPUKernels.swiGLU(gate: gate.pointer(Float.self), up: up.pointer(Float.self), into: y.pointer(Float.self), count: y.count)
    }

    public func add(_ a: Tensor, _ b: Tensor, into y: Tensor) {
        for (t, what) in [(a, "add operand"), (b, "add operand"), (y, "add output")] { Self.requireF32(t, what) }
        precondition(a.count == b.count && b.count == y.count, "add of \(a.shape) and \(b.shape) into \(y.shape)")
        CPUKernels.add(a.pointer(Float.self), b.pointer(Float.self), into: y.pointer(Float.self), count: y.count)
    }

    public func writeKV(k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, layout: AttentionLayout) {
        for (t, what) in [(k, "writeKV keys"), (v, "writeKV values"), (kCache, "key cache"), (vCache, "value cache")] {
            Self.requireF32(t, what)
        }
        precondition(k.rank == 3 && k.shape == v.shape && k.shape[0] == layout.positionOfToken.count,
                     "writeKV keys \(k.shape) / values \(v.shape) must be [N, kvHeads, headDim] for \(layout.positionOfToken.count) tokens")
        let rowWidth = k.shape[1] * k.shape[2]
        precondition(kCache.shape == vCache.shape && kCache.count % max(rowWidth, 1) == 0,
                     "caches \(kCache.shape) / \(vCache.shape) do not hold rows of \(k.shape[1]) × \(k.shape[2])")
        let slots = kCache.count / max(rowWidth, 1)
        let kc = kCache.pointer(Float.self), vc = vCache.pointer(Float.self)
        let kp = k.pointer(Float.self), vp = v.pointer(Float.self)
        for n in 0..<k.shape[0] {
            let slot = layout.slot(ofToken: n)
            precondition(slot >= 0 && slot < slots, "token \(n) maps to cache slot \(slot) of \(slots)")
            (kc + slot * rowWidth).update(from: kp + n * rowWidth, count: rowWidth)
            (vc + slot * rowWidth).update(from: vp + n * rowWidth, count: rowWidth)
        }
    }

    public func attention(q: Tensor, kCache: Tensor, vCache: Tensor, layout: AttentionLayout, scale: Float, into out: Tensor) {
        for (t, what) in [(q, "attention queries"), (kCache, "key cache"), (vCache, "value cache"), (out, "attention output")] {
            Self.requireF32(t, what)
        }
        precondition(q.rank == 3 && out.shape == q.shape && q.shape[0] == layout.positionOfToken.count,
                     "attention queries \(q.shape) / output \(out.shape) must be [N, heads, headDim] for \(layout.positionOfToken.count) tokens")
        let heads = q.shape[1], headDim = q.shape[2]
        let kvHeads = kCache.rank >= 3 ? kCache.shape[kCache.rank - 2] : 0
        precondition(kCache.rank >= 3 && kCache.shape == vCache.shape && kCache.shape[kCache.rank - 1] == headDim
                     && kvHeads > 0 && heads % kvHeads == 0,
                     "caches \(kCache.shape) must be [slots, kvHeads, \(headDim)] with kvHeads dividing \(heads) heads")
        CPUKernels.attention(
            q: q.pointer(Float.self), kCache: kCache.pointer(Float.self), vCache: vCache.pointer(Float.self),
            slots: kCache.count / (kvHeads * headDim), heads: heads, kvHeads: kvHeads, headDim: headDim,
            layout: layout, scale: scale, into: out.pointer(Float.self))
    }

    public func softmax(_ x: Tensor, into y: Tensor) {
        let (rows, width) = Self.sameShapeRows(x, y, "softmax")
        CPUKernels.softmax(x.pointer(Float.self), rows: rows, width: width, into: y.pointer(Float.self))
    }

    public func logSoftmax(_ x: Tensor, into y: Tensor) {
        let (rows, width) = Self.sameShapeRows(x, y, "logSoftmax")
        CPUKernels.logSoftmax(x.pointer(Float.self), rows: rows, width: width, into: y.pointer(Float.self))
    }

    // MARK: Checks

    static func requireF32(_ t: Tensor, _ what: String) {
        precondition(t.memory != nil, "\(what) is a \(t.device.kind) tensor; the CPU backend needs host tensors")
        precondition(t.dtype == .f32 && t.isContiguous, "\(what) must be contiguous f32, got \(t) strides \(t.strides)")
    }

    /// Rows and width (last dimension) of two f32 tensors of the same shape.
    static func sameShapeRows(_ x: Tensor, _ y: Tensor, _ op: String) -> (rows: Int, width: Int) {
        requireF32(x, "\(op) input")
        requireF32(y, "\(op) output")
        precondition(x.shape == y.shape && x.rank >= 1, "\(op) of \(x.shape) into \(y.shape)")
        return (x.shape.dropLast().reduce(1, *), x.shape[x.rank - 1])
    }

    /// An f32 tensor seen as rows of `columns` elements: any contiguous tensor whose last dimension
    /// is `columns`, or a rank-2 view with unit column stride.
    static func matrix(_ t: Tensor, columns: Int, _ what: String) -> (pointer: UnsafeMutablePointer<Float>, rows: Int, rowStride: Int) {
        precondition(t.memory != nil && t.dtype == .f32, "\(what) must be an f32 host tensor, got \(t)")
        precondition(t.rank >= 1 && t.shape[t.rank - 1] == columns, "\(what) \(t.shape) must have \(columns) columns")
        if t.isContiguous { return (t.pointer(Float.self), t.shape.dropLast().reduce(1, *), columns) }
        precondition(t.rank == 2 && t.strides[1] == 1, "\(what) must be contiguous or a row-strided matrix, got strides \(t.strides)")
        return (t.pointer(Float.self), t.shape[0], t.strides[0])
    }
}

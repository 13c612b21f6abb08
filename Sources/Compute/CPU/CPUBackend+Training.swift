/// `TrainingOps` on the host: shape checks here, the loops in `CPUKernels` (Backward/). As in the
/// forward ops, a shape or dtype violation is a bug in model code and stops the process with a message.
extension CPUBackend: TrainingOps {
    public func linearBackwardInput(_ dy: Tensor, weight: Tensor, into dx: Tensor, accumulate: Bool) {
        precondition(weight.rank == 2 && weight.strides[1] == 1 && weight.dtype.isFloatingPoint,
                     "linearBackwardInput weight must be [out, in] with unit column stride, got \(weight) strides \(weight.strides)")
        let o = weight.shape[0], k = weight.shape[1]
        let dys = Self.matrix(dy, columns: o, "linearBackwardInput output gradient")
        let dxs = Self.matrix(dx, columns: k, "linearBackwardInput input gradient")
        precondition(dys.rows == dxs.rows, "linearBackwardInput: \(dys.rows) gradient rows but \(dxs.rows) input rows")
        CPUKernels.linearBackwardInput(
            dy: dys.pointer, dyRowStride: dys.rowStride, weight: UnsafeRawPointer(weight.rawPointer), weightType: weight.dtype,
            weightRowStride: weight.strides[0], dx: dxs.pointer, dxRowStride: dxs.rowStride, rows: dys.rows,
            inFeatures: k, outFeatures: o, accumulate: accumulate)
    }

    public func linearBackwardWeight(_ dy: Tensor, input x: Tensor, weightGradient dW: Tensor, biasGradient db: Tensor?) {
        Self.requireF32(dW, "linearBackwardWeight weight gradient")
        precondition(dW.rank == 2, "linearBackwardWeight weight gradient \(dW.shape) must be [out, in]")
        let o = dW.shape[0], k = dW.shape[1]
        let dys = Self.matrix(dy, columns: o, "linearBackwardWeight output gradient")
        let xs = Self.matrix(x, columns: k, "linearBackwardWeight input")
        precondition(dys.rows == xs.rows, "linearBackwardWeight: \(dys.rows) gradient rows but \(xs.rows) input rows")
        if let db {
            Self.requireF32(db, "linearBackwardWeight bias gradient")
            precondition(db.count == o, "linearBackwardWeight bias gradient \(db.shape) for \(o) outputs")
        }
        CPUKernels.linearBackwardWeight(
            dy: dys.pointer, dyRowStride: dys.rowStride, x: xs.pointer, xRowStride: xs.rowStride,
            dW: dW.pointer(Float.self), db: db?.pointer(Float.self), rows: dys.rows, inFeatures: k, outFeatures: o)
    }

    public func embeddingBackward(ids: [Int32], _ dy: Tensor, into dTable: Tensor) {
        Self.requireF32(dy, "embeddingBackward output gradient")
        Self.requireF32(dTable, "embeddingBackward table gradient")
        precondition(dTable.rank == 2 && dy.count == ids.count * dTable.shape[1],
                     "embeddingBackward of \(dy.shape) for \(ids.count) ids into \(dTable.shape)")
        ids.withUnsafeBufferPointer { ids in
            CPUKernels.embeddingBackward(ids: ids, dy.pointer(Float.self), vocabulary: dTable.shape[0], width: dTable.shape[1],
                                         into: dTable.pointer(Float.self))
        }
    }

    public func layerNormBackward(_ x: Tensor, weight: Tensor, eps: Float, outputGradient dy: Tensor,
                                  into dx: Tensor, weightGradient dWeight: Tensor, biasGradient dBias: Tensor) {
        let (rows, width) = Self.sameShapeRows(x, dx, "layerNormBackward")
        precondition(dy.shape == x.shape, "layerNormBackward output gradient \(dy.shape) for input \(x.shape)")
        Self.requireF32(dy, "layerNormBackward output gradient")
        for (t, what) in [(dWeight, "weight gradient"), (dBias, "bias gradient")] {
            Self.requireF32(t, "layerNormBackward \(what)")
            precondition(t.count == width, "layerNormBackward \(what) \(t.shape) for width \(width)")
        }
        precondition(weight.count == width, "layerNormBackward weight \(weight.shape) for width \(width)")
        CPUKernels.withFloats(weight) { w in
            CPUKernels.layerNormBackward(x.pointer(Float.self), dy.pointer(Float.self), rows: rows, width: width, weight: w, eps: eps,
                                         into: dx.pointer(Float.self), weightGradient: dWeight.pointer(Float.self),
                                         biasGradient: dBias.pointer(Float.self))
        }
    }

    public func rmsNormBackward(_ x: Tensor, weight: Tensor, eps: Float, outputGradient dy: Tensor,
                                into dx: Tensor, weightGradient dWeight: Tensor) {
        let (rows, width) = Self.sameShapeRows(x, dx, "rmsNormBackward")
        precondition(dy.shape == x.shape, "rmsNormBackward output gradient \(dy.shape) for input \(x.shape)")
        Self.requireF32(dy, "rmsNormBackward output gradient")
        Self.requireF32(dWeight, "rmsNormBackward weight gradient")
        precondition(weight.count == width && dWeight.count == width, "rmsNormBackward weight \(weight.shape) / gradient \(dWeight.shape) for width \(width)")
        CPUKernels.withFloats(weight) { w in
            CPUKernels.rmsNormBackward(x.pointer(Float.self), dy.pointer(Float.self), rows: rows, width: width, weight: w, eps: eps,
                                       into: dx.pointer(Float.self), weightGradient: dWeight.pointer(Float.self))
        }
    }

    public func activationBackward(_ kind: Activation, input x: Tensor, outputGradient dy: Tensor, into dx: Tensor) {
        for (t, what) in [(x, "input"), (dy, "output gradient"), (dx, "input gradient")] { Self.requireF32(t, "activationBackward \(what)") }
        precondition(x.count == dy.count && dy.count == dx.count, "activationBackward of \(x.shape), \(dy.shape) into \(dx.shape)")
        CPUKernels.activationBackward(kind, input: x.pointer(Float.self), outputGradient: dy.pointer(Float.self),
                                      into: dx.pointer(Float.self), count: x.count)
    }

    public func swiGLUBackward(gate: Tensor, up: Tensor, outputGradient dy: Tensor, gateGradient dGate: Tensor, upGradient dUp: Tensor) {
        for (t, what) in [(gate, "gate"), (up, "up"), (dy, "output gradient"), (dGate, "gate gradient"), (dUp, "up gradient")] {
            Self.requireF32(t, "swiGLUBackward \(what)")
        }
        let n = gate.count
        precondition(up.count == n && dy.count == n && dGate.count == n && dUp.count == n,
                     "swiGLUBackward of \(gate.shape), \(up.shape), \(dy.shape) into \(dGate.shape), \(dUp.shape)")
        CPUKernels.swiGLUBackward(gate: gate.pointer(Float.self), up: up.pointer(Float.self), outputGradient: dy.pointer(Float.self),
                                  gateGradient: dGate.pointer(Float.self), upGradient: dUp.pointer(Float.self), count: n)
    }

    public func scale(_ x: Tensor, by factor: Float, into y: Tensor) {
        Self.requireF32(x, "scale input")
        Self.requireF32(y, "scale output")
        precondition(x.count == y.count, "scale of \(x.shape) into \(y.shape)")
        CPUKernels.scale(x.pointer(Float.self), by: factor, into: y.pointer(Float.self), count: x.count)
    }

    public func sumOfSquares(_ x: Tensor) throws -> Double {
        Self.requireF32(x, "sumOfSquares input")
        return CPUKernels.sumOfSquares(x.pointer(Float.self), count: x.count)
    }

    public func causalAttention(q: Tensor, k: Tensor, v: Tensor, batch: Int, sequence: Int, scale: Float,
                                into out: Tensor, logSumExp: Tensor) {
        let (heads, kvHeads, headDim) = Self.attentionShapes(q: q, k: k, v: v, batch: batch, sequence: sequence, "causalAttention")
        Self.requireF32(out, "causalAttention output")
        Self.requireF32(logSumExp, "causalAttention log-sum-exp")
        precondition(out.shape == q.shape && logSumExp.count == batch * sequence * heads,
                     "causalAttention output \(out.shape) / log-sum-exp \(logSumExp.shape) for queries \(q.shape)")
        CPUKernels.causalAttention(q: q.pointer(Float.self), k: k.pointer(Float.self), v: v.pointer(Float.self),
                                   batch: batch, sequence: sequence, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                   scale: scale, into: out.pointer(Float.self), logSumExp: logSumExp.pointer(Float.self))
    }

    public func causalAttentionBackward(q: Tensor, k: Tensor, v: Tensor, out: Tensor, logSumExp: Tensor,
                                        outputGradient dOut: Tensor, batch: Int, sequence: Int, scale: Float,
                                        queryGradient dq: Tensor, keyGradient dk: Tensor, valueGradient dv: Tensor) {
        let (heads, kvHeads, headDim) = Self.attentionShapes(q: q, k: k, v: v, batch: batch, sequence: sequence, "causalAttentionBackward")
        for (t, what) in [(out, "output"), (logSumExp, "log-sum-exp"), (dOut, "output gradient"),
                          (dq, "query gradient"), (dk, "key gradient"), (dv, "value gradient")] {
            Self.requireF32(t, "causalAttentionBackward \(what)")
        }
        precondition(out.shape == q.shape && dOut.shape == q.shape && dq.shape == q.shape && dk.shape == k.shape && dv.shape == v.shape
                     && logSumExp.count == batch * sequence * heads,
                     "causalAttentionBackward gradients \(dq.shape), \(dk.shape), \(dv.shape) for \(q.shape), \(k.shape), \(v.shape)")
        CPUKernels.causalAttentionBackward(
            q: q.pointer(Float.self), k: k.pointer(Float.self), v: v.pointer(Float.self), out: out.pointer(Float.self),
            logSumExp: logSumExp.pointer(Float.self), outputGradient: dOut.pointer(Float.self), batch: batch, sequence: sequence,
            heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale,
            queryGradient: dq.pointer(Float.self), keyGradient: dk.pointer(Float.self), valueGradient: dv.pointer(Float.self))
    }

    public func rotaryBackward(_ dx: Tensor, positions: [Int32], theta: Float) {
        // The rotation by −angle: negating a position negates f32(pos)·invFreq exactly, so this is
        // the forward's rotation transposed to the bit.
        rotary(dx, positions: positions.map { -$0 }, theta: theta)
    }

    public func tokenLogProbs(_ logits: Tensor, targets: [Int32], into logProb: Tensor, entropy: Tensor?) {
        Self.requireF32(logits, "tokenLogProbs logits")
        Self.requireF32(logProb, "tokenLogProbs output")
        precondition(logits.rank == 2 && logits.shape[0] == targets.count && logProb.count == targets.count,
                     "tokenLogProbs of logits \(logits.shape) with \(targets.count) targets into \(logProb.shape)")
        if let entropy {
            Self.requireF32(entropy, "tokenLogProbs entropy")
            precondition(entropy.count == targets.count, "tokenLogProbs entropy \(entropy.shape) for \(targets.count) rows")
        }
        targets.withUnsafeBufferPointer { targets in
            CPUKernels.tokenLogProbs(logits.pointer(Float.self), rows: logits.shape[0], vocabulary: logits.shape[1], targets: targets,
                                     into: logProb.pointer(Float.self), entropy: entropy?.pointer(Float.self))
        }
    }

    public func tokenLogProbsBackward(_ logits: Tensor, targets: [Int32], logProbGradient dLogProb: Tensor) {
        Self.requireF32(logits, "tokenLogProbsBackward logits")
        Self.requireF32(dLogProb, "tokenLogProbsBackward gradient")
        precondition(logits.rank == 2 && logits.shape[0] == targets.count && dLogProb.count == targets.count,
                     "tokenLogProbsBackward of logits \(logits.shape) with \(targets.count) targets and gradient \(dLogProb.shape)")
        targets.withUnsafeBufferPointer { targets in
            CPUKernels.tokenLogProbsBackward(logits.pointer(Float.self), rows: logits.shape[0], vocabulary: logits.shape[1],
                                             targets: targets, logProbGradient: dLogProb.pointer(Float.self))
        }
    }

    public func adamW(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, step: Int, hyper: AdamWHyperparameters,
                      decayRanges: [Range<Int>], lowPrecisionCopy: Tensor?) {
        for (t, what) in [(params, "parameters"), (grads, "gradients"), (m, "first moments"), (v, "second moments")] {
            Self.requireF32(t, "adamW \(what)")
        }
        let n = params.count
        precondition(grads.count == n && m.count == n && v.count == n, "adamW buffers \(params.shape), \(grads.shape), \(m.shape), \(v.shape) differ")
        if let copy = lowPrecisionCopy {
            precondition(copy.memory != nil && copy.dtype == .bf16 && copy.isContiguous && copy.count == n,
                         "adamW low-precision copy must be a contiguous bf16 host tensor of \(n) elements, got \(copy)")
        }
        CPUKernels.adamW(params: params.pointer(Float.self), grads: grads.pointer(Float.self), m: m.pointer(Float.self),
                         v: v.pointer(Float.self), count: n, step: step, hyper: hyper, decayRanges: decayRanges,
                         lowPrecisionCopy: lowPrecisionCopy?.pointer(UInt16.self))
    }

    /// Heads, kv heads and head size of whole-sequence attention operands, checked.
    static func attentionShapes(q: Tensor, k: Tensor, v: Tensor, batch: Int, sequence: Int, _ op: String) -> (Int, Int, Int) {
        for (t, what) in [(q, "queries"), (k, "keys"), (v, "values")] { requireF32(t, "\(op) \(what)") }
        precondition(q.rank == 3 && k.rank == 3 && k.shape == v.shape && q.shape[0] == batch * sequence && k.shape[0] == q.shape[0]
                     && k.shape[2] == q.shape[2] && k.shape[1] > 0 && q.shape[1] % k.shape[1] == 0,
                     "\(op): queries \(q.shape), keys \(k.shape), values \(v.shape) for \(batch) × \(sequence) tokens")
        return (q.shape[1], k.shape[1], q.shape[2])
    }
}

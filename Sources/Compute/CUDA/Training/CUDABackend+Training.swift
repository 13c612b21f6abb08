import CCUDA
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The training op set on the GPU (see `TrainingOps`): cuBLASLt GEMMs for the linear layers' backward,
/// NVRTC kernels for the rest (`Kernels/TrainingKernels*.swift`). Precision: ``trainingPrecision``.
/// Each op checks shapes on the host (mismatches trap, as on the CPU), checks token ids (a bad id is
/// the op's failure, thrown by the next `synchronize`), then queues its kernels without waiting.
extension CUDABackend: TrainingOps {
    // MARK: Linear layers

    public func linearBackwardInput(_ dy: Tensor, weight: Tensor, into dx: Tensor, accumulate: Bool) {
        precondition(dy.rank == 2 && weight.rank == 2 && dx.rank == 2, "linearBackwardInput of \(dy) by \(weight) into \(dx)")
        let (n, o, k) = (dy.shape[0], dy.shape[1], weight.shape[1])
        precondition(weight.shape[0] == o && dx.shape == [n, k] && dy.dtype == .f32 && dx.dtype == .f32,
                     "linearBackwardInput of \(dy.shape) by \(weight.shape) into \(dx.shape)")
        let (dya, wa, dxa) = (address(dy, "dy"), address(weight, "weight"), address(dx, "dx"))
        if n == 0 || k == 0 { return }
        perform("linearBackwardInput") {
            if o == 0 {
                if !accumulate { try CUDAError.check(driver.cuMemsetD8Async(dxa, 0, dx.byteCount, stream.handle), "cuMemsetD8Async") }
                return
            }
            // A 16-bit weight (the bf16 copy of mixed precision) sets the operand type: dy is rounded to it.
            let operand = try gemmOperands([(dya, n * o)], dtype: weight.dtype, writes: [(dxa, dx.byteCount)])[0]
            try trainingGEMM.matmul(transA: false, transB: false, m: k, n: n, k: o, a: wa, lda: k, b: operand, ldb: o,
                                    c: dxa, ldc: k, abType: weight.dtype, beta: accumulate ? 1 : 0, stream: stream.handle)
        }
    }

    public func linearBackwardWeight(_ dy: Tensor, input x: Tensor, weightGradient dW: Tensor, biasGradient db: Tensor?) {
        precondition(dy.rank == 2 && x.rank == 2 && dW.rank == 2, "linearBackwardWeight of \(dy), \(x) into \(dW)")
        let (n, o, k) = (dy.shape[0], dy.shape[1], x.shape[1])
        precondition(x.shape[0] == n && dW.shape == [o, k] && [dy.dtype, x.dtype, dW.dtype].allSatisfy { $0 == .f32 },
                     "linearBackwardWeight of \(dy.shape), \(x.shape) into \(dW.shape) (f32)")
        if let db { precondition(db.count == o && db.dtype == .f32, "bias gradient \(db) for \(o) outputs") }
        let (dya, xa, dWa) = (address(dy, "dy"), address(x, "x"), address(dW, "dW"))
        let dba = db.map { address($0, "db") }
        if n == 0 || o == 0 { return }
        perform("linearBackwardWeight") {
            if k > 0 {
                let type: DType = trainingState.precision == .bf16Mixed ? .bf16 : .f32
                let operands = try gemmOperands([(xa, n * k), (dya, n * o)], dtype: type,
                                                writes: [(dWa, dW.byteCount)] + (db.map { [(dba!, $0.byteCount)] } ?? []))
                let (a, b) = (operands[0], operands[1])
                try trainingGEMM.matmul(transA: false, transB: true, m: k, n: o, k: n, a: a, lda: k, b: b, ldb: o,
                                        c: dWa, ldc: k, abType: type, beta: 1, stream: stream.handle)
            }
            if let dba {
                try launch("column_sum_accumulate_f32", grid: ((o + 31) / 32, max(1, min((n + 63) / 64, 256)), 1), block: (32, 8, 1),
                           [.address(dya), .address(dba), .int64(Int64(n)), .int32(Int32(o))])
            }
        }
    }

    /// The GEMM operands at `sources` (f32, `count` elements each) as `dtype`: the addresses themselves
    /// for f32, else 16-bit copies in the GEMM workspaces, reusing those the previous op left of the same
    /// memory (see ``CUDATrainingState/conversions``). `writes` are the byte ranges this op writes: the
    /// copies of other memory it leaves in the workspaces stay valid for the next op.
    func gemmOperands(_ sources: [(address: UInt64, count: Int)], dtype: DType,
                              writes: [(address: UInt64, bytes: Int)]) throws -> [UInt64] {
        if dtype == .f32 { return sources.map(\.address) }
        let state = trainingState
        let fresh = state.conversionsOperation &+ 1 == state.operation ? state.conversions : []
        var result = [UInt64?](repeating: nil, count: sources.count)
        var used: [CUDATrainingState.Conversion] = []
        for (i, source) in sources.enumerated() {
            if let hit = fresh.first(where: { $0.source == source.address && $0.count == source.count && $0.dtype == dtype }),
               !used.contains(where: { $0.slot == hit.slot }), let buffer = state.workspaces[hit.slot] {
                result[i] = buffer.deviceAddress
                used.append(hit)
            }
        }
        for (i, source) in sources.enumerated() where result[i] == nil {
            let slot = [CUDATrainingState.Workspace.gemmA, .gemmB].first { slot in !used.contains { $0.slot == slot } }!
            let converted = try workspace(slot, bytes: source.count * dtype.byteSize)
            try launch("convert_f32_\(Self.kernelSuffix(dtype))", grid: (Self.blocks(source.count), 1, 1), block: (256, 1, 1),
                       [.address(source.address), .address(converted), .int64(Int64(source.count))])
            result[i] = converted
            used.append(.init(source: source.address, count: source.count, dtype: dtype, slot: slot))
        }
        // Copies in slots this op did not touch, of memory it does not write, stay valid one op longer.
        let carried = fresh.filter { conversion in
            !used.contains { $0.slot == conversion.slot } && !writes.contains { write in
                conversion.source < write.address + UInt64(write.bytes) && write.address < conversion.source + UInt64(conversion.count * 4)
            }
        }
        state.conversions = used + carried
        state.conversionsOperation = state.operation
        return result.map { $0! }
    }

    // MARK: Embeddings

    public func embeddingBackward(ids: [Int32], _ dy: Tensor, into dTable: Tensor) {
        precondition(dTable.rank == 2 && dy.rank == 2 && dy.shape == [ids.count, dTable.shape[1]] && dy.dtype == .f32 && dTable.dtype == .f32,
                     "embeddingBackward of \(ids.count) ids, \(dy) into \(dTable)")
        let (vocabulary, hidden) = (dTable.shape[0], dTable.shape[1])
        let (dya, ta) = (address(dy, "dy"), address(dTable, "dTable"))
        if ids.isEmpty || hidden == 0 { return }
        perform("embeddingBackward") {
            if let bad = ids.first(where: { $0 < 0 || Int($0) >= vocabulary }) {
                throw ComputeError("token id \(bad) is outside the vocabulary of \(vocabulary)")
            }
            let idsAddress = try upload(ids)
            try launch("embedding_backward_f32", grid: (min((hidden + 255) / 256, 1024), min(ids.count, 65535), 1), block: (256, 1, 1),
                       [.address(idsAddress), .address(dya), .address(ta), .int32(Int32(ids.count)), .int32(Int32(hidden))])
        }
    }

    // MARK: Norms

    public func layerNormBackward(_ x: Tensor, weight: Tensor, eps: Float, outputGradient dy: Tensor,
                                  into dx: Tensor, weightGradient dWeight: Tensor, biasGradient dBias: Tensor) {
        let hidden = x.shape.last ?? 0
        precondition(x.shape == dy.shape && x.shape == dx.shape && [x.dtype, dy.dtype, dx.dtype, dWeight.dtype, dBias.dtype].allSatisfy { $0 == .f32 }
                     && weight.count == hidden && dWeight.count == hidden && dBias.count == hidden,
                     "layerNormBackward of \(x) with \(weight) into \(dx), \(dWeight), \(dBias)")
        let rows = hidden == 0 ? 0 : x.count / hidden
        let (xa, wa, dya, dxa) = (address(x, "x"), address(weight, "weight"), address(dy, "dy"), address(dx, "dx"))
        let (dwa, dba) = (address(dWeight, "dWeight"), address(dBias, "dBias"))
        if rows == 0 { return }
        perform("layerNormBackward") {
            let blocks = min(rows, TrainingNormKernels.maxBlocks)
            let partials = try workspace(.normPartials, bytes: blocks * 2 * hidden * 4)
            try launch("layernorm_backward_\(Self.kernelSuffix(weight.dtype))", grid: (blocks, 1, 1), block: (256, 1, 1),
                       [.address(xa), .address(wa), .address(dya), .address(dxa), .address(partials),
                        .int32(Int32(rows)), .int32(Int32(hidden)), .float(eps)])
            for (offset, target) in [(0, dwa), (hidden, dba)] {
                try launch("reduce_partials_f32", grid: ((hidden + 255) / 256, 1, 1), block: (256, 1, 1),
                           [.address(partials + UInt64(offset * 4)), .address(target), .int32(Int32(blocks)), .int32(Int32(hidden)),
                            .int32(Int32(2 * hidden))])
            }
        }
    }

    public func rmsNormBackward(_ x: Tensor, weight: Tensor, eps: Float, outputGradient dy: Tensor,
                                into dx: Tensor, weightGradient dWeight: Tensor) {
        let hidden = x.shape.last ?? 0
        precondition(x.shape == dy.shape && x.shape == dx.shape && [x.dtype, dy.dtype, dx.dtype, dWeight.dtype].allSatisfy { $0 == .f32 }
                     && weight.count == hidden && dWeight.count == hidden,
                     "rmsNormBackward of \(x) with \(weight) into \(dx), \(dWeight)")
        let rows = hidden == 0 ? 0 : x.count / hidden
        let (xa, wa, dya, dxa, dwa) = (address(x, "x"), address(weight, "weight"), address(dy, "dy"), address(dx, "dx"), address(dWeight, "dWeight"))
        if rows == 0 { return }
        perform("rmsNormBackward") {
            let blocks = min(rows, TrainingNormKernels.maxBlocks)
            let partials = try workspace(.normPartials, bytes: blocks * hidden * 4)
            try launch("rmsnorm_backward_\(Self.kernelSuffix(weight.dtype))", grid: (blocks, 1, 1), block: (256, 1, 1),
                       [.address(xa), .address(wa), .address(dya), .address(dxa), .address(partials),
                        .int32(Int32(rows)), .int32(Int32(hidden)), .float(eps)])
            try launch("reduce_partials_f32", grid: ((hidden + 255) / 256, 1, 1), block: (256, 1, 1),
                       [.address(partials), .address(dwa), .int32(Int32(blocks)), .int32(Int32(hidden)), .int32(Int32(hidden))])
        }
    }

    // MARK: Elementwise

    public func activationBackward(_ kind: Activation, input x: Tensor, outputGradient dy: Tensor, into dx: Tensor) {
        precondition(x.count == dy.count && dy.count == dx.count && [x.dtype, dy.dtype, dx.dtype].allSatisfy { $0 == .f32 },
                     "activationBackward of \(x), \(dy) into \(dx)")
        let (xa, dya, dxa) = (address(x, "x"), address(dy, "dy"), address(dx, "dx"))
        if x.count == 0 { return }
        perform("activationBackward") {
            try launch("activation_backward_f32", grid: (Self.blocks(x.count), 1, 1), block: (256, 1, 1),
                       [.address(xa), .address(dya), .address(dxa), .int64(Int64(x.count)), .int32(ElementwiseKernels.code(of: kind))])
        }
    }

    public func swiGLUBackward(gate: Tensor, up: Tensor, outputGradient dy: Tensor, gateGradient dGate: Tensor, upGradient dUp: Tensor) {
        precondition([up, dy, dGate, dUp].allSatisfy { $0.count == gate.count } && [gate, up, dy, dGate, dUp].allSatisfy { $0.dtype == .f32 },
                     "swiGLUBackward of \(gate), \(up), \(dy) into \(dGate), \(dUp)")
        let (ga, ua, dya, dga, dua) = (address(gate, "gate"), address(up, "up"), address(dy, "dy"), address(dGate, "dGate"), address(dUp, "dUp"))
        if gate.count == 0 { return }
        perform("swiGLUBackward") {
            try launch("swiglu_backward_f32", grid: (Self.blocks(gate.count), 1, 1), block: (256, 1, 1),
                       [.address(ga), .address(ua), .address(dya), .address(dga), .address(dua), .int64(Int64(gate.count))])
        }
    }

    public func scale(_ x: Tensor, by factor: Float, into y: Tensor) {
        precondition(x.count == y.count && x.dtype == .f32 && y.dtype == .f32, "scale of \(x) into \(y)")
        let (xa, ya) = (address(x, "x"), address(y, "y"))
        if x.count == 0 { return }
        perform("scale") {
            try launch("scale_f32", grid: (Self.blocks(x.count), 1, 1), block: (256, 1, 1),
                       [.address(xa), .address(ya), .int64(Int64(x.count)), .float(factor)])
        }
    }

    public func sumOfSquares(_ x: Tensor) throws -> Double {
        precondition(x.dtype == .f32, "sumOfSquares of \(x) (f32)")
        let xa = address(x, "x")
        if x.count == 0 { return 0 }
        var result = 0.0
        perform("sumOfSquares") {
            let blocks = min(Self.blocks(x.count), TrainingElementwiseKernels.sumOfSquaresBlocks)
            let partials = try workspace(.sumOfSquares, bytes: (blocks + 1) * 8)
            let total = partials + UInt64(blocks * 8)
            try launch("sum_squares_partial_f32", grid: (blocks, 1, 1), block: (256, 1, 1),
                       [.address(xa), .address(partials), .int64(Int64(x.count))])
            try launch("sum_squares_final", grid: (1, 1, 1), block: (TrainingElementwiseKernels.sumOfSquaresBlocks, 1, 1),
                       [.address(partials), .address(total), .int32(Int32(blocks))])
            try stream.synchronize()
            try CUDAError.check(driver.cuMemcpyDtoH(&result, total, 8), "cuMemcpyDtoH_v2")
        }
        try synchronize()
        return result
    }

    // MARK: Attention

    /// Checks the shapes of causal attention; returns (heads, kvHeads, headDim).
    private func attentionShapes(q: Tensor, k: Tensor, v: Tensor, batch: Int, sequence: Int) -> (Int, Int, Int) {
        precondition(q.rank == 3 && k.rank == 3 && k.shape == v.shape && q.shape[0] == batch * sequence && k.shape[0] == q.shape[0]
                     && k.shape[2] == q.shape[2] && [q.dtype, k.dtype, v.dtype].allSatisfy { $0 == .f32 },
                     "causal attention of \(q), \(k), \(v) over \(batch) × \(sequence) tokens")
        let (heads, kvHeads, headDim) = (q.shape[1], k.shape[1], q.shape[2])
        precondition(kvHeads > 0 && heads % kvHeads == 0, "\(heads) query heads over \(kvHeads) KV heads")
        precondition(headDim <= TrainingAttentionKernels.maxHeadDim, "head dimension \(headDim) > \(TrainingAttentionKernels.maxHeadDim)")
        return (heads, kvHeads, headDim)
    }

    /// The tensor-core variant for this call, or nil for the f32 kernels: tensor cores in bf16-mixed precision
    /// (unless ``trainingAttention`` or `COLOCATE_TRAINING_ATTENTION` says f32) on sm_80 and newer.
    private func tensorCoreAttention(headDim: Int) throws -> (name: String, forwardSharedBytes: Int, dqSharedBytes: Int, dkdvSharedBytes: Int)? {
        guard trainingState.precision == .bf16Mixed, headDim <= TrainingAttentionTCKernels.maxHeadDim,
              cudaDevice.properties.architecture >= TrainingAttentionTCKernels.minimumArchitecture else { return nil }
        let choice = try trainingState.attention ?? CUDATrainingAttention.fromEnvironment()
        return choice == .tensorCores ? TrainingAttentionTCKernels.variant(headDim: headDim) : nil
    }

    public func causalAttention(q: Tensor, k: Tensor, v: Tensor, batch: Int, sequence: Int, scale: Float,
                                into out: Tensor, logSumExp: Tensor) {
        let (heads, kvHeads, headDim) = attentionShapes(q: q, k: k, v: v, batch: batch, sequence: sequence)
        precondition(out.shape == q.shape && out.dtype == .f32 && logSumExp.count == batch * sequence * heads && logSumExp.dtype == .f32,
                     "causal attention into \(out), \(logSumExp)")
        let (qa, ka, va, oa, la) = (address(q, "q"), address(k, "k"), address(v, "v"), address(out, "out"), address(logSumExp, "logSumExp"))
        if q.count == 0 { return }
        perform("causalAttention") {
            let shape: [KernelArgument] = [.int32(Int32(sequence)), .int32(Int32(heads)), .int32(Int32(kvHeads)), .int32(Int32(headDim)), .float(scale)]
            if let variant = try tensorCoreAttention(headDim: headDim) {
                let tiles = (sequence + TrainingAttentionTCKernels.blockRows - 1) / TrainingAttentionTCKernels.blockRows
                try launchWithSharedMemory("flash_attention_tc_forward_\(variant.name)", grid: (tiles, heads, batch),
                                           block: (TrainingAttentionTCKernels.threads, 1, 1), sharedBytes: variant.forwardSharedBytes,
                                           [.address(qa), .address(ka), .address(va), .address(oa), .address(la)] + shape)
                return
            }
            let tiles = (sequence + TrainingAttentionKernels.blockRows - 1) / TrainingAttentionKernels.blockRows
            let variant = TrainingAttentionKernels.variant(headDim: headDim).name
            try launch("flash_attention_forward_\(variant)_f32", grid: (tiles, heads, batch), block: (TrainingAttentionKernels.threads, 1, 1),
                       [.address(qa), .address(ka), .address(va), .address(oa), .address(la)] + shape)
        }
    }

    public func causalAttentionBackward(q: Tensor, k: Tensor, v: Tensor, out: Tensor, logSumExp: Tensor,
                                        outputGradient dOut: Tensor, batch: Int, sequence: Int, scale: Float,
                                        queryGradient dq: Tensor, keyGradient dk: Tensor, valueGradient dv: Tensor) {
        let (heads, kvHeads, headDim) = attentionShapes(q: q, k: k, v: v, batch: batch, sequence: sequence)
        precondition(out.shape == q.shape && dOut.shape == q.shape && dq.shape == q.shape && dk.shape == k.shape && dv.shape == v.shape
                     && [out, dOut, dq, dk, dv, logSumExp].allSatisfy { $0.dtype == .f32 } && logSumExp.count == batch * sequence * heads,
                     "causal attention backward into \(dq), \(dk), \(dv)")
        let (qa, ka, va, oa, la, doa) = (address(q, "q"), address(k, "k"), address(v, "v"), address(out, "out"),
                                         address(logSumExp, "logSumExp"), address(dOut, "dOut"))
        let (dqa, dka, dva) = (address(dq, "dq"), address(dk, "dk"), address(dv, "dv"))
        if q.count == 0 { return }
        perform("causalAttentionBackward") {
            let rows = batch * sequence * heads
            let delta = try workspace(.attentionDelta, bytes: rows * 4)
            try launch("attention_backward_delta_f32", grid: (min((rows + 7) / 8, 1 << 20), 1, 1), block: (256, 1, 1),
                       [.address(oa), .address(doa), .address(delta), .int64(Int64(rows)), .int32(Int32(headDim))])
            let shape: [KernelArgument] = [.int32(Int32(sequence)), .int32(Int32(heads)), .int32(Int32(kvHeads)), .int32(Int32(headDim)), .float(scale)]
            if let variant = try tensorCoreAttention(headDim: headDim) {
                let tiles = (sequence + TrainingAttentionTCKernels.blockRows - 1) / TrainingAttentionTCKernels.blockRows
                try launchWithSharedMemory("flash_attention_tc_backward_dq_\(variant.name)", grid: (tiles, heads, batch),
                                           block: (TrainingAttentionTCKernels.threads, 1, 1), sharedBytes: variant.dqSharedBytes,
                                           [.address(qa), .address(ka), .address(va), .address(doa), .address(la), .address(delta), .address(dqa)] + shape)
                try launchWithSharedMemory("flash_attention_tc_backward_dkdv_\(variant.name)", grid: (tiles, kvHeads, batch),
                                           block: (TrainingAttentionTCKernels.threads, 1, 1), sharedBytes: variant.dkdvSharedBytes,
                                           [.address(qa), .address(ka), .address(va), .address(doa), .address(la), .address(delta),
                                            .address(dka), .address(dva)] + shape)
                return
            }
            let tiles = (sequence + TrainingAttentionKernels.blockRows - 1) / TrainingAttentionKernels.blockRows
            let variant = TrainingAttentionKernels.variant(headDim: headDim)
            try launchWithSharedMemory("flash_attention_backward_dq_\(variant.name)_f32", grid: (tiles, heads, batch),
                                       block: (TrainingAttentionKernels.threads, 1, 1), sharedBytes: variant.dqSharedBytes,
                                       [.address(qa), .address(ka), .address(va), .address(doa), .address(la), .address(delta), .address(dqa)] + shape)
            try launchWithSharedMemory("flash_attention_backward_dkdv_\(variant.name)_f32", grid: (tiles, kvHeads, batch),
                                       block: (TrainingAttentionKernels.threads, 1, 1), sharedBytes: variant.dkdvSharedBytes,
                                       [.address(qa), .address(ka), .address(va), .address(doa), .address(la), .address(delta),
                                        .address(dka), .address(dva)] + shape)
        }
    }

    public func rotaryBackward(_ dx: Tensor, positions: [Int32], theta: Float) {
        precondition(dx.rank == 3 && dx.shape[0] == positions.count && dx.shape[2] % 2 == 0 && dx.dtype == .f32,
                     "rotaryBackward of \(dx) at \(positions.count) positions")
        let (tokens, heads, headDim) = (dx.shape[0], dx.shape[1], dx.shape[2])
        let xa = address(dx, "dx")
        if dx.count == 0 { return }
        perform("rotaryBackward") {
            let positionsAddress = try upload(positions)
            try launch("rotary_backward_f32", grid: (Self.blocks(dx.count / 2), 1, 1), block: (256, 1, 1),
                       [.address(xa), .address(positionsAddress), .int32(Int32(tokens)), .int32(Int32(heads)),
                        .int32(Int32(headDim)), .float(theta)])
        }
    }

    // MARK: Log-probabilities

    /// Uploads the targets of `rows` rows of `vocabulary` logits, after checking them.
    private func uploadTargets(_ targets: [Int32], vocabulary: Int) throws -> UInt64 {
        if let bad = targets.firstIndex(where: { $0 < 0 || Int($0) >= vocabulary }) {
            throw ComputeError("target \(targets[bad]) of row \(bad) is outside the vocabulary of \(vocabulary)")
        }
        return try upload(targets)
    }

    public func tokenLogProbs(_ logits: Tensor, targets: [Int32], into logProb: Tensor, entropy: Tensor?) {
        precondition(logits.rank == 2 && logits.shape[0] == targets.count && logProb.count == targets.count && logits.dtype == .f32
                     && logProb.dtype == .f32 && (entropy.map { $0.count == targets.count && $0.dtype == .f32 } ?? true),
                     "tokenLogProbs of \(logits) for \(targets.count) targets into \(logProb)")
        let (rows, vocabulary) = (logits.shape[0], logits.shape[1])
        let (la, pa) = (address(logits, "logits"), address(logProb, "logProb"))
        let ea = entropy.map { address($0, "entropy") } ?? 0
        if rows == 0 { return }
        perform("tokenLogProbs") {
            let targetsAddress = try uploadTargets(targets, vocabulary: vocabulary)
            try launch("token_logprobs_f32", grid: (rows, 1, 1), block: (1024, 1, 1),
                       [.address(la), .address(targetsAddress), .address(pa), .address(ea), .int32(Int32(vocabulary))])
        }
    }

    public func tokenLogProbsBackward(_ logits: Tensor, targets: [Int32], logProbGradient dLogProb: Tensor) {
        precondition(logits.rank == 2 && logits.shape[0] == targets.count && dLogProb.count == targets.count
                     && logits.dtype == .f32 && dLogProb.dtype == .f32,
                     "tokenLogProbsBackward of \(logits) for \(targets.count) targets with \(dLogProb)")
        let (rows, vocabulary) = (logits.shape[0], logits.shape[1])
        let (la, ga) = (address(logits, "logits"), address(dLogProb, "dLogProb"))
        if rows == 0 { return }
        perform("tokenLogProbsBackward") {
            let targetsAddress = try uploadTargets(targets, vocabulary: vocabulary)
            // In bf16-mixed, the logits' gradient feeds two bf16 GEMMs next (the lm_head's dX and dW):
            // write its bf16 copy here too, as if converted, and save them a pass over [R, V].
            var copy: UInt64 = 0
            if trainingState.precision == .bf16Mixed {
                copy = try workspace(.gemmA, bytes: logits.count * 2)
                trainingState.conversions = [.init(source: la, count: logits.count, dtype: .bf16, slot: .gemmA)]
                trainingState.conversionsOperation = trainingState.operation
            }
            try launch("token_logprobs_backward_f32", grid: (rows, 1, 1), block: (1024, 1, 1),
                       [.address(la), .address(targetsAddress), .address(ga), .address(copy), .int32(Int32(vocabulary))])
        }
    }

    // MARK: Optimizer

    public func adamW(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, step: Int, hyper: AdamWHyperparameters,
                      decayRanges: [Range<Int>], lowPrecisionCopy: Tensor?) {
        let count = params.count
        precondition([grads, m, v].allSatisfy { $0.count == count } && [params, grads, m, v].allSatisfy { $0.dtype == .f32 },
                      "adamW over \(params), \(grads), \(m), \(v) (f32, one count)")
        if let lowPrecisionCopy { precondition(lowPrecisionCopy.count == count && lowPrecisionCopy.dtype == .bf16, "adamW copy \(lowPrecisionCopy) (bf16 [\(count)])") }
        precondition(step >= 1, "AdamW steps count from 1")
        let (pa, ga, ma, va) = (address(params, "params"), address(grads, "grads"), address(m, "m"), address(v, "v"))
        let lowAddress = lowPrecisionCopy.map { address($0, "lowPrecisionCopy") } ?? 0
        let ranges = Self.decayTable(decayRanges, count: count)
        // As torch: the scalars in double from the hyperparameters as the user wrote them (a Float's
        // shortest decimal form: 0.9, not 0.899999976), then f32.
        let (lr, beta1, beta2, wd) = (Self.decimal(hyper.learningRate), Self.decimal(hyper.beta1), Self.decimal(hyper.beta2),
                                      Self.decimal(hyper.weightDecay))
        let stepSize = lr / (1 - pow(beta1, Double(step)))
        let bc2Sqrt = (1 - pow(beta2, Double(step))).squareRoot()
        if count == 0 { return }
        perform("adamW") {
            let rangesAddress = try upload(ranges.isEmpty ? [Int64(0), 0] : ranges)
            try launch("adamw_f32", grid: (Self.blocks(count), 1, 1), block: (256, 1, 1),
                       [.address(pa), .address(ga), .address(ma), .address(va), .address(lowAddress), .int64(Int64(count)),
                        .address(rangesAddress), .int32(Int32(ranges.count / 2)), .float(Float(1 - lr * wd)), .float(Float(1 - beta1)),
                        .float(hyper.beta2), .float(Float(1 - beta2)), .float(hyper.epsilon), .float(Float(stepSize)), .float(Float(bc2Sqrt))])
        }
    }

    /// The Double a Float was written as (its shortest decimal representation).
    static func decimal(_ x: Float) -> Double { Double(x.description) ?? Double(x) }

    /// The decay ranges clipped to [0, count), sorted and merged, as (start, end) pairs.
    static func decayTable(_ ranges: [Range<Int>], count: Int) -> [Int64] {
        var merged: [Range<Int>] = []
        for r in ranges.map({ $0.clamped(to: 0..<count) }).filter({ !$0.isEmpty }).sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last, r.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                merged.append(r)
            }
        }
        return merged.flatMap { [Int64($0.lowerBound), Int64($0.upperBound)] }
    }
}

import Compute
import Foundation

/// Every `TrainingOps` op of the CUDA backend against the CPU backend's (the reference implementation)
/// on the same random data, several shapes each: max abs errors scaled by max(1, max |reference|), with
/// tolerances for f32 (reassociation only) and for bf16 operands (one bf16 rounding of an operand).
struct CUDATrainingParityCheck {
    /// The backend checked (the GPU's; any `TrainingOps` works, which is how this check is checked).
    let gpu: any TrainingOps
    let cpu: any TrainingOps
    var report = CUDACheckReport()
    var random = SplitMix64(seed: 0x7EA1_2026)

    init(backend: any TrainingOps) {
        gpu = backend
        cpu = CPUBackend()
    }

    static func run(backend: any TrainingOps) throws -> CUDACheckReport {
        print("\n== training ops (GPU vs CPU TrainingOps)")
        var check = CUDATrainingParityCheck(backend: backend)
        try check.runAll()
        return check.report
    }

    /// Sets the checked backend's GEMM precision, when it has one.
    func setPrecision(_ precision: CUDATrainingPrecision) {
        (gpu as? CUDABackend)?.trainingPrecision = precision
    }

    mutating func runAll() throws {
        defer { setPrecision(.f32) }
        try linear()
        try embedding()
        try norms()
        try elementwise()
        try attention()
        try rotary()
        try logProbs()
        try adamW()
        _ = try gpu.download(try gpu.zeros([1], dtype: .f32))  // waits for the queue, throws its failure
    }

    // MARK: Helpers

    mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] { random.floats(n, lo, hi) }

    /// The same values on the host (as `dtype`) and on the checked backend.
    func pair(_ values: [Float], _ shape: [Int], _ dtype: DType = .f32) throws -> (host: Tensor, device: Tensor) {
        let host = try Tensor(values, shape: shape).converted(to: dtype)
        return (host, try gpu.upload(host))
    }

    mutating func expect(_ name: String, _ device: Tensor, _ host: Tensor, tolerance: Float) throws {
        expect(name, try gpu.download(device).floats(), host.floats(), tolerance: tolerance)
    }

    /// Max abs error scaled by max(1, max |reference|), against `tolerance`.
    mutating func expect(_ name: String, _ values: [Float], _ reference: [Float], tolerance: Float) {
        var error: Float = values.count == reference.count ? 0 : .infinity
        var scale: Float = 1
        for (g, r) in zip(values, reference) {
            error = max(error, abs(g - r).isNaN ? .infinity : abs(g - r))
            scale = max(scale, abs(r))
        }
        let ok = error / scale <= tolerance
        print("  \(ok ? "ok  " : "FAIL") \(name.padding(toLength: 58, withPad: " ", startingAt: 0)) max|Δ| \(format(error))  scaled \(format(error / scale))  tol \(format(tolerance))")
        if ok { report.pass(name) } else { report.fail(name) }
    }

    func format(_ x: Float) -> String { String(format: "%.2e", Double(x)) }

    // MARK: Checks

    mutating func linear() throws {
        for (n, o, k) in [(5, 48, 64), (64, 1024, 768), (33, 257, 1000), (512, 768, 3072)] {
            let dyValues = floats(n * o), xValues = floats(n * k), wValues = floats(o * k, -0.1, 0.1)
            let dy = try pair(dyValues, [n, o]), x = try pair(xValues, [n, k])
            for dtype in [DType.f32, .bf16] {
                let w = try pair(wValues, [o, k], dtype)
                let tolerance: Float = dtype == .f32 ? 2e-5 : 2e-2
                for accumulate in [false, true] where dtype == .f32 || !accumulate {
                    let start = floats(n * k)
                    let dx = try pair(start, [n, k])
                    cpu.linearBackwardInput(dy.host, weight: w.host, into: dx.host, accumulate: accumulate)
                    gpu.linearBackwardInput(dy.device, weight: w.device, into: dx.device, accumulate: accumulate)
                    try expect("linearBackwardInput \(dtype) [\(n),\(o)]·[\(o),\(k)]\(accumulate ? " +=" : "")", dx.device, dx.host, tolerance: tolerance)
                }
                // dW: f32 operands in .f32, bf16 operands in .bf16Mixed (against f32 math on the CPU).
                setPrecision(dtype == .f32 ? .f32 : .bf16Mixed)
                let dW = try pair(floats(o * k), [o, k]), db = try pair(floats(o), [o])
                cpu.linearBackwardWeight(dy.host, input: x.host, weightGradient: dW.host, biasGradient: db.host)
                gpu.linearBackwardWeight(dy.device, input: x.device, weightGradient: dW.device, biasGradient: db.device)
                let mode = dtype == .f32 ? "f32" : "bf16-mixed"
                try expect("linearBackwardWeight \(mode) dW [\(n),\(o)]ᵀ·[\(n),\(k)]", dW.device, dW.host,
                           tolerance: dtype == .f32 ? 2e-5 * Float(max(1, n / 64)) : 2e-2)
                try expect("linearBackwardWeight \(mode) db", db.device, db.host, tolerance: 2e-5 * Float(max(1, n / 64)))
                setPrecision(.f32)
            }
        }
    }

    mutating func embedding() throws {
        let (v, h, n) = (1000, 96, 300)
        let ids = (0..<n).map { _ in Int32(random.int(50)) }  // many repeats: the adds must not race
        let dy = try pair(floats(n * h), [n, h])
        let table = try pair(floats(v * h), [v, h])
        cpu.embeddingBackward(ids: ids, dy.host, into: table.host)
        gpu.embeddingBackward(ids: ids, dy.device, into: table.device)
        try expect("embeddingBackward [\(n) ids, \(h)] (repeated ids)", table.device, table.host, tolerance: 1e-5)
    }

    mutating func norms() throws {
        for (rows, hidden) in [(1, 64), (67, 768), (600, 896), (300, 4096)] {
            let xValues = floats(rows * hidden, -3, 3), dyValues = floats(rows * hidden)
            let (wValues, bValues) = (floats(hidden, 0.5, 1.5), floats(hidden))
            let tolerance: Float = 2e-5 * Float(max(1, rows / 32))  // weight gradients sum over rows
            for dtype in [DType.f32, .bf16] {
                let x = try pair(xValues, [rows, hidden]), dy = try pair(dyValues, [rows, hidden]), w = try pair(wValues, [hidden], dtype)
                let dx = try pair(floats(rows * hidden), [rows, hidden])
                let dW = try pair(bValues, [hidden]), dB = try pair(bValues, [hidden])
                cpu.layerNormBackward(x.host, weight: w.host, eps: 1e-5, outputGradient: dy.host, into: dx.host, weightGradient: dW.host, biasGradient: dB.host)
                gpu.layerNormBackward(x.device, weight: w.device, eps: 1e-5, outputGradient: dy.device, into: dx.device,
                                      weightGradient: dW.device, biasGradient: dB.device)
                try expect("layerNormBackward \(dtype) dx [\(rows),\(hidden)]", dx.device, dx.host, tolerance: 2e-5)
                try expect("layerNormBackward \(dtype) dWeight", dW.device, dW.host, tolerance: tolerance)
                try expect("layerNormBackward \(dtype) dBias", dB.device, dB.host, tolerance: tolerance)

                let rx = try pair(floats(rows * hidden), [rows, hidden]), rW = try pair(bValues, [hidden])
                cpu.rmsNormBackward(x.host, weight: w.host, eps: 1e-6, outputGradient: dy.host, into: rx.host, weightGradient: rW.host)
                gpu.rmsNormBackward(x.device, weight: w.device, eps: 1e-6, outputGradient: dy.device, into: rx.device, weightGradient: rW.device)
                try expect("rmsNormBackward \(dtype) dx [\(rows),\(hidden)]", rx.device, rx.host, tolerance: 2e-5)
                try expect("rmsNormBackward \(dtype) dWeight", rW.device, rW.host, tolerance: tolerance)
            }
        }
    }

    mutating func elementwise() throws {
        let n = 100_003
        let x = try pair(floats(n, -6, 6), [n]), dy = try pair(floats(n), [n])
        for kind in [Activation.relu, .gelu, .geluTanh, .silu] {
            let (hostOut, deviceOut) = (try Tensor.zeros([n]), try gpu.zeros([n], dtype: .f32))
            cpu.activationBackward(kind, input: x.host, outputGradient: dy.host, into: hostOut)
            gpu.activationBackward(kind, input: x.device, outputGradient: dy.device, into: deviceOut)
            try expect("activationBackward \(kind)", deviceOut, hostOut, tolerance: 2e-6)
        }
        let up = try pair(floats(n, -3, 3), [n])
        let (hg, hu, dg, du) = (try Tensor.zeros([n]), try Tensor.zeros([n]), try gpu.zeros([n], dtype: .f32), try gpu.zeros([n], dtype: .f32))
        cpu.swiGLUBackward(gate: x.host, up: up.host, outputGradient: dy.host, gateGradient: hg, upGradient: hu)
        gpu.swiGLUBackward(gate: x.device, up: up.device, outputGradient: dy.device, gateGradient: dg, upGradient: du)
        try expect("swiGLUBackward dGate", dg, hg, tolerance: 2e-6)
        try expect("swiGLUBackward dUp", du, hu, tolerance: 2e-6)

        let scaled = try pair(x.host.floats(), [n])
        cpu.scale(scaled.host, by: 0.37, into: scaled.host)
        gpu.scale(scaled.device, by: 0.37, into: scaled.device)
        try expect("scale (in place)", scaled.device, scaled.host, tolerance: 0)

        for count in [1, 1000, 3_000_017] {
            let values = try pair(floats(count, -2, 2), [count])
            let (reference, result) = (try cpu.sumOfSquares(values.host), try gpu.sumOfSquares(values.device))
            let relative = abs(result - reference) / max(reference, 1e-30)
            let ok = relative <= 1e-6
            print("  \(ok ? "ok  " : "FAIL") sumOfSquares [\(count)]: \(result) vs \(reference) (relative \(String(format: "%.1e", relative)), tol 1e-6)")
            if ok { report.pass("sumOfSquares [\(count)]") } else { report.fail("sumOfSquares [\(count)]") }
        }
    }

    /// f32 precision: the f32 kernels, to reassociation. bf16-mixed: the tensor-core kernels (unless
    /// `COLOCATE_TRAINING_ATTENTION=f32`), whose q, k, v, dOut, P and dS are rounded to bf16: one rounding
    /// of an operand (2⁻⁹ relative) leaves max errors near 7e-3 of the largest value (the standalone
    /// harness, `bench/probes/flash_attn_tc`), hence 2e-2.
    mutating func attention() throws {
        for (precision, forwardTolerance, backwardTolerance) in [(CUDATrainingPrecision.f32, Float(1e-5), Float(5e-5)),
                                                                 (.bf16Mixed, 2e-2, 2e-2)] {
            setPrecision(precision)
            try attention(label: precision == .f32 ? "" : " bf16-mixed", forwardTolerance: forwardTolerance,
                          backwardTolerance: backwardTolerance)
        }
        setPrecision(.f32)
    }

    mutating func attention(label: String, forwardTolerance: Float, backwardTolerance: Float) throws {
        // (batch, sequence, heads, kvHeads, headDim): MHA, GQA, head dims below / at / above one warp, sequences
        // shorter than a tile and not a multiple of it.
        for (batch, sequence, heads, kvHeads, headDim) in [(1, 5, 2, 1, 16), (2, 37, 4, 2, 64), (1, 130, 12, 12, 64),
                                                           (2, 65, 8, 2, 128), (1, 100, 6, 3, 80), (3, 512, 4, 1, 64)] {
            let n = batch * sequence
            let scale = 1 / Float(headDim).squareRoot()
            let q = try pair(floats(n * heads * headDim, -2, 2), [n, heads, headDim])
            let k = try pair(floats(n * kvHeads * headDim, -2, 2), [n, kvHeads, headDim])
            let v = try pair(floats(n * kvHeads * headDim), [n, kvHeads, headDim])
            let out = (host: try Tensor.zeros([n, heads, headDim]), device: try gpu.zeros([n, heads, headDim], dtype: .f32))
            let lse = (host: try Tensor.zeros([n, heads]), device: try gpu.zeros([n, heads], dtype: .f32))
            cpu.causalAttention(q: q.host, k: k.host, v: v.host, batch: batch, sequence: sequence, scale: scale, into: out.host, logSumExp: lse.host)
            gpu.causalAttention(q: q.device, k: k.device, v: v.device, batch: batch, sequence: sequence, scale: scale,
                                into: out.device, logSumExp: lse.device)
            let name = "[\(batch)×\(sequence), \(heads)/\(kvHeads) heads, d \(headDim)]"
            try expect("causalAttention\(label) out \(name)", out.device, out.host, tolerance: forwardTolerance)
            try expect("causalAttention\(label) logSumExp", lse.device, lse.host, tolerance: forwardTolerance)

            // The backward from the CPU's forward results on both, so that only the backward is compared.
            let outDevice = try gpu.upload(out.host), lseDevice = try gpu.upload(lse.host)
            let dOut = try pair(floats(n * heads * headDim), [n, heads, headDim])
            let grads = [q.host.shape, k.host.shape, v.host.shape].map { shape in (try? Tensor.zeros(shape))! }
            let deviceGrads = try [q.host.shape, k.host.shape, v.host.shape].map { try gpu.zeros($0, dtype: .f32) }
            cpu.causalAttentionBackward(q: q.host, k: k.host, v: v.host, out: out.host, logSumExp: lse.host, outputGradient: dOut.host,
                                        batch: batch, sequence: sequence, scale: scale,
                                        queryGradient: grads[0], keyGradient: grads[1], valueGradient: grads[2])
            gpu.causalAttentionBackward(q: q.device, k: k.device, v: v.device, out: outDevice, logSumExp: lseDevice, outputGradient: dOut.device,
                                        batch: batch, sequence: sequence, scale: scale,
                                        queryGradient: deviceGrads[0], keyGradient: deviceGrads[1], valueGradient: deviceGrads[2])
            for (gradient, i) in [("dq", 0), ("dk", 1), ("dv", 2)] {
                try expect("causalAttentionBackward\(label) \(gradient) \(name)", deviceGrads[i], grads[i], tolerance: backwardTolerance)
            }
        }
    }

    mutating func rotary() throws {
        for (tokens, heads, headDim, theta) in [(3, 2, 8, Float(10000)), (17, 4, 64, 10000), (5, 3, 128, 1_000_000)] {
            let positions = (0..<tokens).map { _ in Int32(random.int(4096)) }
            let x = try pair(floats(tokens * heads * headDim), [tokens, heads, headDim])
            let embedding = RotaryEmbedding(theta: theta, headDim: headDim)
            cpu.rotaryBackward(x.host, positions: positions, embedding: embedding)
            gpu.rotaryBackward(x.device, positions: positions, embedding: embedding)
            try expect("rotaryBackward [\(tokens),\(heads),\(headDim)] θ=\(Int(theta))", x.device, x.host, tolerance: 2e-5)
        }
    }

    mutating func logProbs() throws {
        for (rows, vocabulary) in [(3, 17), (7, 50272), (64, 151_936), (129, 1000)] {
            let logitValues = floats(rows * vocabulary, -8, 8)
            let targets = (0..<rows).map { _ in Int32(random.int(vocabulary)) }
            let logits = try pair(logitValues, [rows, vocabulary])
            let logProb = (host: try Tensor.zeros([rows]), device: try gpu.zeros([rows], dtype: .f32))
            let entropy = (host: try Tensor.zeros([rows]), device: try gpu.zeros([rows], dtype: .f32))
            cpu.tokenLogProbs(logits.host, targets: targets, into: logProb.host, entropy: entropy.host)
            gpu.tokenLogProbs(logits.device, targets: targets, into: logProb.device, entropy: entropy.device)
            try expect("tokenLogProbs [\(rows),\(vocabulary)]", logProb.device, logProb.host, tolerance: 1e-5)
            try expect("tokenLogProbs entropy", entropy.device, entropy.host, tolerance: 1e-5)

            // Every third row's gradient is 0: those rows become zeros.
            let gradient = (0..<rows).map { $0 % 3 == 0 ? Float(0) : random.float(-1, 1) }
            let dLogProb = try pair(gradient, [rows])
            cpu.tokenLogProbsBackward(logits.host, targets: targets, logProbGradient: dLogProb.host)
            gpu.tokenLogProbsBackward(logits.device, targets: targets, logProbGradient: dLogProb.device)
            try expect("tokenLogProbsBackward [\(rows),\(vocabulary)]", logits.device, logits.host, tolerance: 1e-6)
        }
    }

    mutating func adamW() throws {
        let count = 100_000
        let hyper = AdamWHyperparameters(learningRate: 3e-3, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        let ranges = [0..<30_000, 50_000..<90_000, 90_000..<90_500, 99_999..<100_000]
        let params = try pair(floats(count), [count]), m = try pair(floats(count, 0, 0.1), [count]), v = try pair(floats(count, 0, 0.01), [count])
        let copy = try gpu.zeros([count], dtype: .bf16)
        for step in 1...3 {
            let grads = try pair(floats(count), [count])
            cpu.adamW(params: params.host, grads: grads.host, m: m.host, v: v.host, step: step, hyper: hyper, decayRanges: ranges, lowPrecisionCopy: nil)
            gpu.adamW(params: params.device, grads: grads.device, m: m.device, v: v.device, step: step, hyper: hyper, decayRanges: ranges,
                      lowPrecisionCopy: copy)
        }
        try expect("adamW params (3 steps, decay ranges)", params.device, params.host, tolerance: 1e-6)
        try expect("adamW m", m.device, m.host, tolerance: 1e-6)
        try expect("adamW v", v.device, v.host, tolerance: 1e-6)
        expect("adamW bf16 copy = rounded params", try gpu.download(copy).floats(),
                      CUDACheckReference.rounded(try gpu.download(params.device).floats(), to: .bf16), tolerance: 0)
    }
}

import Compute
import Foundation
import Models

/// Every op of the CUDA backend against `CUDACheckReference` on random data of several shapes.
/// Prints the max abs error of each (scaled by max(1, max |reference|)) and its tolerance.
struct CUDAParityCheck {
    let backend: CUDABackend
    var report: CUDACheckReport
    var random = SplitMix64(seed: 0x5EED)

    init(backend: CUDABackend, report: CUDACheckReport) {
        self.backend = backend
        self.report = report
    }

    mutating func expect(_ name: String, _ gpu: [Float], _ reference: [Float], tolerance: Float) {
        precondition(gpu.count == reference.count)
        var error: Float = 0
        var scale: Float = 1
        for (g, r) in zip(gpu, reference) {
            error = max(error, abs(g - r).isNaN ? .infinity : abs(g - r))
            scale = max(scale, abs(r))
        }
        let relative = error / scale
        let ok = relative <= tolerance
        print("  \(ok ? "ok  " : "FAIL") \(name.padding(toLength: 52, withPad: " ", startingAt: 0)) max|Δ| \(format(error))  scaled \(format(relative))  tol \(format(tolerance))")
        if ok { report.pass(name) } else { report.fail(name) }
    }

    func format(_ x: Float) -> String { String(format: "%.2e", Double(x)) }

    func up(_ values: [Float], _ shape: [Int], _ dtype: DType = .f32) throws -> Tensor {
        try backend.upload(Tensor(values, shape: shape), as: dtype)
    }

    func zeros(_ shape: [Int], _ dtype: DType = .f32) throws -> Tensor { try backend.zeros(shape, dtype: dtype) }

    mutating func runAll() throws {
        print("\n== parity (GPU vs CPU reference)")
        try linear()
        try linearLowPrecisionOperands()
        try linearBiasCopies()
        try fusedLinears()
        try embedding()
        try norms()
        try rotary()
        try elementwise()
        try attention()
        try softmaxAndSampling()
        try logitSampling()
        try logitSamplingStatistics()
        try conversions()
        try backend.synchronize()
    }

    mutating func linear() throws {
        for (n, k, o) in [(1, 64, 48), (7, 768, 3072), (33, 1000, 257), (64, 1024, 1024)] {
            let x = random.floats(n * k), w = random.floats(o * k, -0.1, 0.1), b = random.floats(o)
            for dtype in [DType.f32, .bf16, .f16] {
                for withBias in [false, true] where withBias || dtype == .f32 || n == 7 {
                    let y = try zeros([n, o])
                    let bias = withBias ? try up(b, [o], dtype) : nil
                    backend.linear(try up(x, [n, k]), weight: try up(w, [o, k], dtype), bias: bias, into: y)
                    let gpu = try backend.floats(y)
                    let wr = CUDACheckReference.rounded(w, to: dtype)
                    let br = withBias ? CUDACheckReference.rounded(b, to: dtype) : nil
                    // The GPU rounds activations to the weight dtype first: the same reference, exactly.
                    let reference = CUDACheckReference.linear(CUDACheckReference.rounded(x, to: dtype), wr, br, n: n, k: k, o: o)
                    expect("linear \(dtype) [\(n),\(k)]x[\(o),\(k)]\(withBias ? "+b" : "")", gpu, reference, tolerance: 2e-5)
                    if dtype != .f32 {
                        // Against f32 activations: what rounding the activations costs (the weight-dtype tolerance).
                        let full = CUDACheckReference.linear(x, wr, br, n: n, k: k, o: o)
                        expect("  … vs f32 activations", gpu, full, tolerance: dtype == .bf16 ? 2e-2 : 3e-3)
                    }
                }
            }
        }
    }

    /// Operands already in the weights' type (what the decode path's fused kernels write), through the
    /// skinny kernel (few rows) and cuBLASLt (more), with a bias.
    mutating func linearLowPrecisionOperands() throws {
        for (n, k, o) in [(3, 768, 768), (20, 896, 4864), (40, 768, 3072)] {
            let x = random.floats(n * k), w = random.floats(o * k, -0.1, 0.1), b = random.floats(o)
            for dtype in [DType.bf16, .f16] {
                let y = try zeros([n, o])
                backend.linear(try up(x, [n, k], dtype), weight: try up(w, [o, k], dtype), bias: try up(b, [o], dtype), into: y)
                let reference = CUDACheckReference.linear(CUDACheckReference.rounded(x, to: dtype), CUDACheckReference.rounded(w, to: dtype),
                                                          CUDACheckReference.rounded(b, to: dtype), n: n, k: k, o: o)
                expect("linear \(dtype) operands [\(n),\(k)]x[\(o),\(k)]+b", try backend.floats(y), reference, tolerance: 2e-5)
            }
        }
    }

    /// A step's f32 bias copies (cuBLASLt's epilogue; bf16 weights — f16 keeps its fill pass), refreshed
    /// after the biases change, as a weight sync changes them between steps.
    mutating func linearBiasCopies() throws {
        let (n, k, o) = (64, 768, 3072)
        let x = random.floats(n * k), w = random.floats(o * k, -0.1, 0.1)
        for dtype in [DType.bf16, .f16] {
            let bias = try up(random.floats(o), [o], dtype)
            let (xd, wd) = (try up(x, [n, k], dtype), try up(w, [o, k], dtype))
            for round in 0..<2 {
                let b = random.floats(o)
                try backend.upload(Tensor(b, shape: [o]), into: bias)
                backend.refreshBiasCopies([bias], rows: n)
                let y = try zeros([n, o])
                backend.linear(xd, weight: wd, bias: bias, into: y)
                backend.releaseBiasCopies()
                let reference = CUDACheckReference.linear(CUDACheckReference.rounded(x, to: dtype), CUDACheckReference.rounded(w, to: dtype),
                                                          CUDACheckReference.rounded(b, to: dtype), n: n, k: k, o: o)
                expect("linear \(dtype) [\(n),\(k)]x[\(o),\(k)]+b after refreshBiasCopies\(round == 0 ? "" : ", biases changed")",
                       try backend.floats(y), reference, tolerance: 2e-5)
            }
        }
    }

    mutating func embedding() throws {
        let (v, h) = (1000, 96)
        let table = random.floats(v * h)
        let ids = (0..<13).map { _ in Int32(random.int(v)) }
        for dtype in [DType.f32, .bf16, .f16] {
            let t = try up(table, [v, h], dtype)
            let y = try zeros([ids.count, h])
            backend.embedding(ids: ids, table: t, into: y, accumulate: false)
            backend.embedding(ids: ids, table: t, into: y, accumulate: true)
            let rounded = CUDACheckReference.rounded(table, to: dtype)
            let reference = ids.flatMap { id in rounded[(Int(id) * h)..<((Int(id) + 1) * h)].map { $0 * 2 } }
            expect("embedding \(dtype) (+ accumulate)", try backend.floats(y), reference, tolerance: 0)
        }
    }

    mutating func norms() throws {
        for (rows, hidden) in [(1, 64), (5, 768), (3, 4096), (2, 5000)] {
            let x = random.floats(rows * hidden, -3, 3), w = random.floats(hidden, 0.5, 1.5), b = random.floats(hidden)
            for dtype in [DType.f32, .bf16] {
                let (wr, br) = (CUDACheckReference.rounded(w, to: dtype), CUDACheckReference.rounded(b, to: dtype))
                let y = try zeros([rows, hidden])
                backend.layerNorm(try up(x, [rows, hidden]), weight: try up(w, [hidden], dtype), bias: try up(b, [hidden], dtype), eps: 1e-5, into: y)
                expect("layerNorm \(dtype) [\(rows),\(hidden)]", try backend.floats(y),
                       CUDACheckReference.layerNorm(x, wr, br, hidden: hidden, eps: 1e-5), tolerance: 1e-5)
                let z = try zeros([rows, hidden])
                backend.rmsNorm(try up(x, [rows, hidden]), weight: try up(w, [hidden], dtype), eps: 1e-6, into: z)
                expect("rmsNorm \(dtype) [\(rows),\(hidden)]", try backend.floats(z),
                       CUDACheckReference.rmsNorm(x, wr, hidden: hidden, eps: 1e-6), tolerance: 1e-5)
                // The residual add fused with the norm, written in f32 or in the weights' type. A 16-bit
                // result may round to the neighbour of the rounded reference (|y| < 8: one bf16 step ≤ 1/32).
                let r = random.floats(rows * hidden, -1, 1)
                let sum = zip(x, r).map(+)
                for output in Set([DType.f32, dtype]) {
                    let tolerance: Float = output == .f32 ? 1e-5 : 0.04
                    let xl = try up(x, [rows, hidden]), yl = try zeros([rows, hidden], output)
                    backend.residualLayerNorm(xl, adding: try up(r, [rows, hidden]), weight: try up(w, [hidden], dtype),
                                              bias: try up(b, [hidden], dtype), eps: 1e-5, into: yl)
                    expect("residual add before layerNorm [\(rows),\(hidden)]", try backend.floats(xl), sum, tolerance: 0)
                    expect("residual layerNorm \(dtype) → \(output) [\(rows),\(hidden)]", try backend.floats(yl),
                           CUDACheckReference.rounded(CUDACheckReference.layerNorm(sum, wr, br, hidden: hidden, eps: 1e-5), to: output),
                           tolerance: tolerance)
                    let xr = try up(x, [rows, hidden]), yr = try zeros([rows, hidden], output)
                    backend.residualRMSNorm(xr, adding: try up(r, [rows, hidden]), weight: try up(w, [hidden], dtype), eps: 1e-6, into: yr)
                    expect("residual rmsNorm \(dtype) → \(output) [\(rows),\(hidden)]", try backend.floats(yr),
                           CUDACheckReference.rounded(CUDACheckReference.rmsNorm(sum, wr, hidden: hidden, eps: 1e-6), to: output),
                           tolerance: tolerance)
                }
            }
        }
    }

    mutating func rotary() throws {
        for (tokens, heads, headDim, theta) in [(3, 2, 8, Float(10000)), (17, 4, 64, 10000), (5, 3, 128, 1_000_000)] {
            let x = random.floats(tokens * heads * headDim)
            let positions = (0..<tokens).map { _ in Int32(random.int(4096)) }
            let t = try up(x, [tokens, heads, headDim])
            backend.rotary(t, positions: positions, theta: theta)
            expect("rotary [\(tokens),\(heads),\(headDim)] θ=\(Int(theta))", try backend.floats(t),
                   CUDACheckReference.rotary(x, positions: positions, heads: heads, headDim: headDim, theta: theta), tolerance: 2e-5)
        }
        // Scaled RoPE (YaRN: per-pair frequencies and a cos/sin scale) against the CPU backend.
        let (tokens, heads, headDim) = (9, 2, 64)
        let embedding = RopeScaling.yarn(.init(factor: 4, originalMaxPositions: 256))
            .embedding(headDim: headDim, theta: 1_000_000, maxPositions: 1024)
        let x = random.floats(tokens * heads * headDim)
        let positions = (0..<tokens).map { _ in Int32(random.int(1024)) }
        let t = try up(x, [tokens, heads, headDim])
        backend.rotary(t, positions: positions, embedding: embedding)
        let cpu = Tensor(x, shape: [tokens, heads, headDim])
        CPUBackend().rotary(cpu, positions: positions, embedding: embedding)
        expect("rotary yarn [\(tokens),\(heads),\(headDim)]", try backend.floats(t), cpu.floats(), tolerance: 2e-5)
    }

    mutating func elementwise() throws {
        let n = 100_003
        let x = random.floats(n, -6, 6), g = random.floats(n, -6, 6)
        for kind in [Activation.relu, .gelu, .geluTanh, .silu] {
            let y = try zeros([n])
            backend.activation(kind, try up(x, [n]), into: y)
            expect("activation \(kind.rawValue)", try backend.floats(y), x.map { CUDACheckReference.activation(kind, $0) }, tolerance: 2e-6)
        }
        let y = try zeros([n])
        backend.swiGLU(gate: try up(g, [n]), up: try up(x, [n]), into: y)
        expect("swiGLU", try backend.floats(y), zip(g, x).map { CUDACheckReference.activation(.silu, $0) * $1 }, tolerance: 2e-6)
        // 16-bit results (the next GEMM's operands): the rounded reference, give or take one step (|y| ≤ 36: 1/4 for bf16).
        for output in [DType.bf16, .f16] {
            let tolerance: Float = output == .bf16 ? 0.25 : 0.02
            let a = try zeros([n], output)
            backend.activation(.gelu, try up(x, [n]), into: a)
            expect("activation gelu → \(output)", try backend.floats(a),
                   CUDACheckReference.rounded(x.map { CUDACheckReference.activation(.gelu, $0) }, to: output), tolerance: tolerance)
            let s = try zeros([n], output)
            backend.swiGLU(gate: try up(g, [n]), up: try up(x, [n]), into: s)
            expect("swiGLU → \(output)", try backend.floats(s),
                   CUDACheckReference.rounded(zip(g, x).map { CUDACheckReference.activation(.silu, $0) * $1 }, to: output), tolerance: tolerance)
        }
        let a = try up(x, [n])
        backend.add(a, try up(g, [n]), into: a)
        expect("add (in place)", try backend.floats(a), zip(x, g).map(+), tolerance: 0)
    }

    mutating func attention() throws {
        for (heads, kvHeads, headDim, cacheType) in [(8, 2, 64, DType.f32), (4, 4, 128, .f32), (6, 2, 80, .bf16), (2, 1, 256, .f16),
                                                          (14, 2, 64, .bf16), (16, 1, 128, .f16)] {
            let blockSize = 16
            let lengths = [5, 37, 70]
            let out16 = cacheType == .f32 ? DType.bf16 : cacheType
            // Shuffled block ids, as a block allocator hands them out.
            var free = Array(0..<32)
            for i in stride(from: free.count - 1, to: 0, by: -1) { free.swapAt(i, random.int(i + 1)) }
            let tables: [[Int32]] = lengths.map { length in
                (0..<((length + blockSize) / blockSize)).map { _ in Int32(free.removeLast()) }
            }
            let slots = 32 * blockSize
            let kCache = try zeros([slots, kvHeads, headDim], cacheType), vCache = try zeros([slots, kvHeads, headDim], cacheType)
            var referenceK = [Float](repeating: 0, count: slots * kvHeads * headDim), referenceV = referenceK
            // Step 1: prefill every sequence; step 2: one decode token each.
            for step in 0..<2 {
                var sequences: [Int32] = [], positions: [Int32] = []
                for (s, length) in lengths.enumerated() {
                    let range = step == 0 ? 0..<length : length..<(length + 1)
                    for p in range {
                        sequences.append(Int32(s))
                        positions.append(Int32(p))
                    }
                }
                let layout = AttentionLayout(blockSize: blockSize, blockTables: tables, sequenceOfToken: sequences, positionOfToken: positions)
                let tokens = positions.count
                let row = kvHeads * headDim
                let k = random.floats(tokens * row), v = random.floats(tokens * row), q = random.floats(tokens * heads * headDim)
                backend.writeKV(k: try up(k, [tokens, kvHeads, headDim]), v: try up(v, [tokens, kvHeads, headDim]),
                                kCache: kCache, vCache: vCache, layout: layout)
                let (kr, vr) = (CUDACheckReference.rounded(k, to: cacheType), CUDACheckReference.rounded(v, to: cacheType))
                for t in 0..<tokens {
                    let slot = layout.slot(ofToken: t)
                    referenceK.replaceSubrange((slot * row)..<((slot + 1) * row), with: kr[(t * row)..<((t + 1) * row)])
                    referenceV.replaceSubrange((slot * row)..<((slot + 1) * row), with: vr[(t * row)..<((t + 1) * row)])
                }
                let label = "h\(heads)/kv\(kvHeads) d\(headDim) \(cacheType) \(step == 0 ? "prefill" : "decode")"
                expect("writeKV \(label)", try backend.floats(kCache) + backend.floats(vCache), referenceK + referenceV, tolerance: 0)
                let out = try zeros([tokens, heads, headDim])
                let scale = 1 / Float(headDim).squareRoot()
                backend.attention(q: try up(q, [tokens, heads, headDim]), kCache: kCache, vCache: vCache, layout: layout, scale: scale, into: out)
                let reference = CUDACheckReference.attention(q: q, kCache: referenceK, vCache: referenceV, layout: layout,
                                                             heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale)
                expect("attention \(label) (\(tokens) tokens)", try backend.floats(out), reference, tolerance: 2e-5)
                // The same through the step's uploaded indices (what the model and CUDA graphs use), in f32
                // and in 16 bits (|out| ≤ 1: one bf16 step ≤ 1/256): the cache's type (the grouped kernel)
                // or, for an f32 cache, bf16 (the lane kernel).
                let step = try backend.prepareStep(tokens: [Int32](repeating: 0, count: tokens), layout: layout, logitRows: [],
                                                   positionOffset: 0, rotary: nil)
                let viaStep = try zeros([tokens, heads, headDim]), viaStep16 = try zeros([tokens, heads, headDim], out16)
                let qd = try up(q, [tokens, heads, headDim])
                backend.attention(q: qd, kCache: kCache, vCache: vCache, step: step, scale: scale, into: viaStep)
                backend.attention(q: qd, kCache: kCache, vCache: vCache, step: step, scale: scale, into: viaStep16)
                expect("attention via step indices \(label)", try backend.floats(viaStep), try backend.floats(out), tolerance: 0)
                expect("attention → \(out16) \(label)", try backend.floats(viaStep16), CUDACheckReference.rounded(reference, to: out16), tolerance: 0.008)
            }
        }
    }

    mutating func softmaxAndSampling() throws {
        for (rows, cols) in [(1, 10), (4, 50272), (64, 32000)] {
            let x = random.floats(rows * cols, -8, 8)
            let input = try up(x, [rows, cols])
            let y = try zeros([rows, cols]), l = try zeros([rows, cols])
            backend.softmax(input, into: y)
            backend.logSoftmax(input, into: l)
            expect("softmax [\(rows),\(cols)]", try backend.floats(y), CUDACheckReference.softmax(x, cols: cols, logarithm: false), tolerance: 1e-6)
            expect("logSoftmax [\(rows),\(cols)]", try backend.floats(l), CUDACheckReference.softmax(x, cols: cols, logarithm: true), tolerance: 2e-6)

            let chosen = try zeros([rows], .i32)
            backend.argmax(input, into: chosen)
            let gpuArgmax = try backend.download(chosen).integers()
            let referenceArgmax = CUDACheckReference.argmax(x, cols: cols).map(Int.init)
            expect("argmax [\(rows),\(cols)]", gpuArgmax.map(Float.init), referenceArgmax.map(Float.init), tolerance: 0)
            let greedy = try backend.greedyTokens(input)
            let referenceLogSoftmax = CUDACheckReference.softmax(x, cols: cols, logarithm: true)
            expect("greedy tokens [\(rows),\(cols)]", greedy.map { Float($0.token) }, referenceArgmax.map(Float.init), tolerance: 0)
            expect("greedy log-probs [\(rows),\(cols)]", greedy.map(\.logprob),
                   referenceArgmax.enumerated().map { referenceLogSoftmax[$0.offset * cols + $0.element] }, tolerance: 2e-6)

            let uniforms = (0..<rows).map { _ in random.float(0, 1) }
            let sampled = try zeros([rows], .i32)
            backend.sample(probabilities: y, uniforms: uniforms, into: sampled)
            let gpuSample = try backend.download(sampled).integers()
            let probabilities = try backend.floats(y)
            let referenceSample = (0..<rows).map { Int(CUDACheckReference.sample(probabilities, cols: cols, row: $0, u: uniforms[$0])) }
            // Summation order differs: a target within rounding of a CDF boundary may pick the neighbour.
            let mismatches = zip(gpuSample, referenceSample).filter { abs($0 - $1) > 1 }.count
            let neighbours = zip(gpuSample, referenceSample).filter { abs($0 - $1) == 1 }.count
            print("  \(mismatches == 0 ? "ok  " : "FAIL") sample [\(rows),\(cols)]: \(rows - mismatches - neighbours) same, \(neighbours) neighbour, \(mismatches) different")
            if mismatches == 0 { report.pass("sample") } else { report.fail("sample [\(rows),\(cols)]") }
        }
    }

    /// `sample_logits_f32` against `CUDACheckReference.LogitSample`, row by row. Tokens agree except where
    /// f32 rounding moves u across a CDF boundary, or a top-p target across a threshold ("neighbour":
    /// the GPU's token is one that a uniform or target within 1e-5 of the exact ones picks); log-probs
    /// agree within 1e-4.
    mutating func logitSampling() throws {
        let settings: [(temperature: Float, topK: Int, topP: Float)] = [
            (1, -1, 1), (0.7, 50, 1), (1, -1, 0.9), (0.8, 20, 0.95), (1e-3, -1, 1), (1.3, 1000, 0.5), (1, 1, 1),
        ]
        let tolerance = 1e-5
        // A vocabulary of GPT-2/OPT size, one spanning a few elements per thread, one below a thread per
        // element, and logits in steps of 0.5 (many exact ties at the thresholds, all of them kept).
        for (rows, cols, ties) in [(64, 50272, false), (32, 1500, false), (8, 37, false), (16, 64, true)] {
            var x = random.floats(rows * cols, -8, 8)
            if ties { x = x.map { ($0 * 2).rounded() / 2 } }
            let input = try up(x, [rows, cols])
            for setting in settings {
                let uniforms = (0..<rows).map { _ in random.float(0, 1) }
                let tokens = try zeros([rows], .i32), logprobs = try zeros([rows]), scratch = try zeros([rows, cols])
                backend.sample(logits: input, temperature: setting.temperature, topK: setting.topK, topP: setting.topP,
                               uniforms: uniforms, tokens: tokens, logprobs: logprobs, scratch: scratch)
                let gpuTokens = try backend.download(tokens).integers(), gpuLogprobs = try backend.floats(logprobs)
                var (same, neighbours, different) = (0, 0, 0)
                var logprobError: Float = 0
                for r in 0..<rows {
                    let reference = CUDACheckReference.LogitSample(
                        logits: x[(r * cols)..<((r + 1) * cols)], temperature: setting.temperature,
                        topK: setting.topK, topP: setting.topP, tolerance: tolerance)
                    let token = gpuTokens[r], u = Double(uniforms[r])
                    guard (0..<cols).contains(token) else {
                        different += 1
                        continue
                    }
                    logprobError = max(logprobError, abs(gpuLogprobs[r] - reference.logprob(token)))
                    if token == reference.token(u: uniforms[r], threshold: reference.thresholds[0]) {
                        same += 1
                    } else if reference.thresholds.contains(where: { threshold in
                        guard let range = reference.interval(of: token, threshold: threshold) else { return false }
                        return u >= range.lowerBound - tolerance && u <= range.upperBound + tolerance
                    }) {
                        neighbours += 1
                    } else {
                        different += 1
                    }
                }
                let ok = different == 0 && logprobError <= 1e-4
                let name = "sample_logits [\(rows),\(cols)\(ties ? " ties" : "")] T=\(setting.temperature) k=\(setting.topK) p=\(setting.topP)"
                print("  \(ok ? "ok  " : "FAIL") \(name.padding(toLength: 52, withPad: " ", startingAt: 0)) \(same) same, \(neighbours) neighbour, \(different) different; logprob max|Δ| \(format(logprobError))")
                if ok { report.pass("sample_logits") } else { report.fail(name) }
            }
            // Same inputs, same outputs, bit for bit (tensor-parallel ranks rely on it).
            let uniforms = (0..<rows).map { _ in random.float(0, 1) }
            let first = try backend.sampleTokens(input, temperature: 0.8, topK: 20, topP: 0.95, uniforms: uniforms)
            let second = try backend.sampleTokens(input, temperature: 0.8, topK: 20, topP: 0.95, uniforms: uniforms)
            let repeated = zip(first, second).allSatisfy { $0.token == $1.token && $0.logprob.bitPattern == $1.logprob.bitPattern }
            print("  \(repeated ? "ok  " : "FAIL") sample_logits [\(rows),\(cols)] twice: \(repeated ? "identical" : "differs")")
            if repeated { report.pass("sample_logits repeat") } else { report.fail("sample_logits repeat [\(rows),\(cols)]") }
        }
    }

    /// 20000 draws from one row of 16 logits: every draw is kept by the truncation, and each token's
    /// frequency is within 4.5 standard errors of its truncated, renormalised probability.
    mutating func logitSamplingStatistics() throws {
        let (cols, draws) = (16, 20_000)
        let logits = random.floats(cols, -2, 2)
        let input = try up(Array((0..<draws).map { _ in logits }.joined()), [draws, cols])
        for (temperature, topK, topP) in [(Float(1), 5, Float(1)), (0.8, -1, 0.7), (1.5, 8, 0.8)] {
            let uniforms = (0..<draws).map { _ in random.float(0, 1) }
            let picks = try backend.sampleTokens(input, temperature: temperature, topK: topK, topP: topP, uniforms: uniforms)
            let reference = CUDACheckReference.LogitSample(logits: logits[...], temperature: temperature, topK: topK,
                                                           topP: topP, tolerance: 0)
            let expected = reference.truncated(threshold: reference.thresholds[0])
            var counts = [Int](repeating: 0, count: cols)
            for pick in picks where (0..<cols).contains(Int(pick.token)) { counts[Int(pick.token)] += 1 }
            let outside = draws - zip(counts, expected).reduce(0) { $0 + ($1.1 > 0 ? $1.0 : 0) }
            var worst = 0.0
            for (count, q) in zip(counts, expected) where q > 0 {
                let standardError = (q * (1 - q) / Double(draws)).squareRoot()
                worst = max(worst, abs(Double(count) / Double(draws) - q) / max(standardError, 1e-12))
            }
            let ok = outside == 0 && worst <= 4.5
            let kept = expected.filter { $0 > 0 }.count
            let name = "sample_logits \(draws) draws of \(cols) T=\(temperature) k=\(topK) p=\(topP)"
            print("  \(ok ? "ok  " : "FAIL") \(name.padding(toLength: 52, withPad: " ", startingAt: 0)) \(kept) kept, \(outside) outside, worst \(String(format: "%.1f", worst)) standard errors (tol 4.5)")
            if ok { report.pass("sample_logits statistics") } else { report.fail(name) }
        }
    }

    mutating func conversions() throws {
        let n = 70_001
        var values = random.floats(n, -70000, 70000)
        values[0] = 0
        values[1] = -0.0
        values[2] = 1e-30
        values[3] = .infinity
        for source in [DType.f32, .bf16, .f16] {
            for destination in [DType.f32, .bf16, .f16] {
                let input = try up(values, [n], source)
                let output = try zeros([n], destination)
                backend.copy(input, into: output)
                let hostInput = try backend.download(input)
                let expected = try hostInput.converted(to: destination)
                let got = try backend.download(output)
                let same = memcmp(got.rawPointer, expected.rawPointer, got.byteCount) == 0
                print("  \(same ? "ok  " : "FAIL") convert \(source) → \(destination): \(same ? "bit-exact" : "differs") vs host")
                if same { report.pass("convert") } else { report.fail("convert \(source)→\(destination)") }

                // Strided: columns 13..<74 of a [37, 100] matrix into a [37, 64] one at column 2.
                let (rows, cols, sourcePitch, destinationPitch) = (37, 61, 100, 64)
                let matrix = try up(Array(values[0..<(rows * sourcePitch)]), [rows, sourcePitch], source)
                let target = try zeros([rows, destinationPitch], destination)
                let sourceAddress = matrix.deviceStorage!.deviceAddress + UInt64(13 * source.byteSize)
                let destinationAddress = target.deviceStorage!.deviceAddress + UInt64(2 * destination.byteSize)
                backend.copy2D(source: sourceAddress, sourcePitch: sourcePitch, destination: destinationAddress,
                               destinationPitch: destinationPitch, rows: rows, cols: cols, sourceType: source, destinationType: destination)
                let hostMatrix = try backend.download(matrix).floats()
                var reference = [Float](repeating: 0, count: rows * destinationPitch)
                for r in 0..<rows {
                    for c in 0..<cols { reference[r * destinationPitch + 2 + c] = hostMatrix[r * sourcePitch + 13 + c] }
                }
                let roundedReference = CUDACheckReference.rounded(reference, to: destination)
                let gpu = try backend.floats(target)
                let exact = zip(gpu, roundedReference).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
                print("  \(exact ? "ok  " : "FAIL") copy2D \(source) → \(destination) [37×61 of pitch 100 → pitch 64]: \(exact ? "exact" : "differs")")
                if exact { report.pass("copy2D") } else { report.fail("copy2D \(source)→\(destination)") }
            }
        }
    }
}

import Compute
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Throughput of `CPUKernels.linear` on this machine: GFLOP/s per shape and weight dtype, the
/// fraction of the machine's f32 FMA peak, and the time of the opt-125m linear stack per decode step.
///
/// Peak = threads × GHz × 2 FMA ports × 8 lanes (AVX2) × 2 flops. The clock is measured with a chain
/// of dependent 8-lane FMAs, assuming the 4-cycle FMA latency of recent Intel cores (Skylake through
/// Sapphire Rapids); /proc/cpuinfo's nominal "cpu MHz" is reported beside it.
public enum MatmulBenchmark {
    /// `rows` × `inFeatures` activations times an `outFeatures` × `inFeatures` weight.
    public struct Shape: Sendable, CustomStringConvertible {
        public var rows: Int, inFeatures: Int, outFeatures: Int
        public init(rows: Int, inFeatures: Int, outFeatures: Int) {
            self.rows = rows
            self.inFeatures = inFeatures
            self.outFeatures = outFeatures
        }
        public var description: String { "N=\(rows) \(inFeatures)→\(outFeatures)" }
        var flops: Double { 2 * Double(rows) * Double(inFeatures) * Double(outFeatures) }
    }

    public static let defaultShapes: [Shape] = [1, 16, 128, 512].flatMap { n in
        [Shape(rows: n, inFeatures: 768, outFeatures: 768),
         Shape(rows: n, inFeatures: 768, outFeatures: 3072),
         Shape(rows: n, inFeatures: 3072, outFeatures: 768)]
    }

    /// Runs the shapes for each dtype (each measurement repeats for about `seconds`), then the
    /// opt-125m stack unless `includeModelStack` is false, and returns a printable report.
    public static func run(
        shapes: [Shape] = defaultShapes, dtypes: [DType] = [.f32, .bf16], seconds: Double = 0.3,
        includeModelStack: Bool = true
    ) -> String {
        let ghz = measureGHz()
        let threads = Parallel.width
        let peak = Double(threads) * ghz * 2 * 8 * 2
        var lines = [String]()
        lines.append("threads \(threads); clock \(format(ghz, 2)) GHz measured (4-cycle FMA latency assumed), \(nominalMHz().map { "\(format($0 / 1000, 2)) GHz" } ?? "unknown") nominal in /proc/cpuinfo")
        lines.append("f32 FMA peak (AVX2) = \(threads) × \(format(ghz, 2)) GHz × 2 FMA × 8 lanes × 2 = \(format(peak, 1)) GFLOP/s")
        lines.append("memory read bandwidth (\(threads) threads, 1 GiB, beyond the L3): \(format(measureReadBandwidth() / 1e9, 1)) GB/s — the bound for one-row (decode) products")
        let (taskTime, callTime) = forEachOverhead()
        lines.append("Parallel.forEach of \(threads) tasks of \(formatTime(taskTime)) each, back to back: \(formatTime(callTime)) per call (ideal \(formatTime(taskTime)))")
        lines.append(pad("shape", 20) + pad("dtype", 6) + pad("time", 12) + pad("GFLOP/s", 10) + pad("% peak", 8) + "weight GB/s")
        for dtype in dtypes {
            for shape in shapes {
                let seconds = timeLinear(shape, dtype: dtype, seconds: seconds)
                let gflops = shape.flops / seconds / 1e9
                let weightBytes = Double(shape.inFeatures * shape.outFeatures * dtype.byteSize)
                lines.append(pad(shape.description, 20) + pad(dtype.description, 6) + pad(formatTime(seconds), 12)
                    + pad(format(gflops, 1), 10) + pad(format(100 * gflops / peak, 1), 8) + format(weightBytes / seconds / 1e9, 1))
            }
        }
        if includeModelStack {
            lines.append("opt-125m linear stack per step (12 × [q,k,v,out 768², fc1 768→3072, fc2 3072→768] + lm_head 768→50272):")
            for dtype in dtypes {
                for n in [1, 16] {
                    let seconds = timeModelStack(rows: n, dtype: dtype)
                    lines.append("  \(dtype) N=\(n): \(formatTime(seconds)) per step → ≤ \(format(Double(n) / seconds, 1)) tokens/s from the linear layers alone")
                }
            }
            lines.append("opt-125m whole decode step (all ops: norms, linears, KV write, attention over 256 cached positions, ReLU, residuals, lm_head):")
            for dtype in dtypes {
                for n in [1, 16] {
                    let seconds = timeDecodeStep(rows: n, context: 256, dtype: dtype)
                    lines.append("  \(dtype) N=\(n): \(formatTime(seconds)) per step → \(format(Double(n) / seconds, 1)) tokens/s")
                }
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Bytes per second that all threads together read from a 1 GiB buffer (summing it).
    public static func measureReadBandwidth() -> Double {
        let count = 1 << 28  // floats
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        Parallel.forEachChunk(total: count, grain: 1 << 20) { range in
            (buffer + range.lowerBound).initialize(repeating: 1, count: range.count)
        }
        let chunks = 64
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: chunks * 16)
        defer { partial.deallocate() }
        var best = Double.infinity
        for _ in 0..<3 {
            best = min(best, measure {
                Parallel.forEach(count: chunks) { c in
                    let start = buffer + c * (count / chunks)
                    var a = SIMD8<Float>(), b = SIMD8<Float>(), d = SIMD8<Float>(), e = SIMD8<Float>()
                    // Wrapping index arithmetic: an overflow check per step would be measured with the reads.
                    let end = count / chunks
                    var i = 0
                    while i < end {
                        a += UnsafeRawPointer(start + i).loadUnaligned(as: SIMD8<Float>.self)
                        b += UnsafeRawPointer(start + (i &+ 8)).loadUnaligned(as: SIMD8<Float>.self)
                        d += UnsafeRawPointer(start + (i &+ 16)).loadUnaligned(as: SIMD8<Float>.self)
                        e += UnsafeRawPointer(start + (i &+ 24)).loadUnaligned(as: SIMD8<Float>.self)
                        i &+= 32
                    }
                    partial[c * 16] = (a + b + d + e).sum()
                }
            })
        }
        blackHole(partial[0])
        return Double(count * 4) / best
    }

    /// Cost of fork-join for small tasks, as decode issues them: `Parallel.forEach(count: width)`
    /// with bodies of about 5 µs, called back to back. Returns (seconds per body alone, seconds per
    /// call); the difference is the overhead.
    public static func forEachOverhead() -> (task: Double, call: Double) {
        let sink = UnsafeMutablePointer<Int>.allocate(capacity: 64 * Parallel.width)
        defer { sink.deallocate() }
        @inline(never) func spin(_ n: Int, _ seed: Int) -> Int {
            var x = seed
            for _ in 0..<n { x = x &* 31 &+ 7 }
            return x
        }
        var iterations = 1000
        while measure({ sink[0] = spin(iterations, 1) }) < 5e-6 && iterations < 1 << 24 { iterations *= 2 }
        var task = Double.infinity, call = Double.infinity
        let calls = 2000
        for _ in 0..<3 {
            task = min(task, measure { for c in 0..<calls { sink[0] = spin(iterations, c) } } / Double(calls))
            call = min(call, measure {
                for c in 0..<calls { Parallel.forEach(count: Parallel.width) { i in sink[64 * i] = spin(iterations, c + i) } }
            } / Double(calls))
        }
        return (task, call)
    }

    /// Seconds per call, the median of repeated timings of about `seconds` in total.
    static func timeLinear(_ shape: Shape, dtype: DType, seconds: Double) -> Double {
        let x = filledTensor([shape.rows, shape.inFeatures], .f32)
        let w = filledTensor([shape.outFeatures, shape.inFeatures], dtype)
        let b = filledTensor([shape.outFeatures], .f32)
        let y = try! Tensor.zeros([shape.rows, shape.outFeatures])  // benchmark-sized allocation
        let backend = CPUBackend()
        let call = { backend.linear(x, weight: w, bias: b, into: y) }
        call()
        // Calibrate a batch of calls of ~10 ms, then take the median batch.
        var perBatch = 1
        while true {
            let t = measure { for _ in 0..<perBatch { call() } }
            if t > 0.01 || perBatch > 1 << 20 { break }
            perBatch *= 2
        }
        var samples = [Double]()
        let start = now()
        while now() - start < seconds || samples.count < 3 {
            samples.append(measure { for _ in 0..<perBatch { call() } } / Double(perBatch))
        }
        samples.sort()
        return samples[samples.count / 2]
    }

    /// Seconds for one pass over the opt-125m linear stack with distinct weights per layer (so that
    /// the weights come from memory as in a real model, 124 M parameters).
    static func timeModelStack(rows n: Int, dtype: DType) -> Double {
        let hidden = 768, ffn = 3072, vocab = 50272, layers = 12
        struct Layer { var q, k, v, o, fc1, fc2: Tensor; var b768, b3072: Tensor }
        let model = (0..<layers).map { _ in
            Layer(q: filledTensor([hidden, hidden], dtype), k: filledTensor([hidden, hidden], dtype),
                  v: filledTensor([hidden, hidden], dtype), o: filledTensor([hidden, hidden], dtype),
                  fc1: filledTensor([ffn, hidden], dtype), fc2: filledTensor([hidden, ffn], dtype),
                  b768: filledTensor([hidden], .f32), b3072: filledTensor([ffn], .f32))
        }
        let head = filledTensor([vocab, hidden], dtype)
        let x = filledTensor([n, hidden], .f32)
        let a = try! Tensor.zeros([n, hidden]), h = try! Tensor.zeros([n, ffn]), logits = try! Tensor.zeros([n, vocab])
        let backend = CPUBackend()
        func step() {
            for layer in model {
                backend.linear(x, weight: layer.q, bias: layer.b768, into: a)
                backend.linear(x, weight: layer.k, bias: layer.b768, into: a)
                backend.linear(x, weight: layer.v, bias: layer.b768, into: a)
                backend.linear(x, weight: layer.o, bias: layer.b768, into: a)
                backend.linear(x, weight: layer.fc1, bias: layer.b3072, into: h)
                backend.linear(h, weight: layer.fc2, bias: layer.b768, into: a)
            }
            backend.linear(x, weight: head, bias: nil, into: logits)
        }
        step()
        var samples = [Double]()
        for _ in 0..<7 { samples.append(measure(step)) }
        samples.sort()
        return samples[samples.count / 2]
    }

    /// Seconds for one decode step of an opt-125m-shaped model: `rows` sequences, each adding one
    /// token at position `context` (so attending over `context + 1` cached positions).
    static func timeDecodeStep(rows n: Int, context: Int, dtype: DType) -> Double {
        let hidden = 768, ffn = 3072, vocab = 50272, layers = 12, heads = 12, headDim = 64, blockSize = 16
        struct Layer {
            var q, k, v, o, fc1, fc2: Tensor
            var bq, bk, bv, bo, b1, b2, norm1w, norm1b, norm2w, norm2b: Tensor
            var kCache, vCache: Tensor
        }
        let blocksPerSequence = (context + 1 + blockSize - 1) / blockSize
        let slots = n * blocksPerSequence * blockSize
        let model = (0..<layers).map { _ in
            Layer(q: filledTensor([hidden, hidden], dtype), k: filledTensor([hidden, hidden], dtype),
                  v: filledTensor([hidden, hidden], dtype), o: filledTensor([hidden, hidden], dtype),
                  fc1: filledTensor([ffn, hidden], dtype), fc2: filledTensor([hidden, ffn], dtype),
                  bq: filledTensor([hidden], dtype), bk: filledTensor([hidden], dtype), bv: filledTensor([hidden], dtype),
                  bo: filledTensor([hidden], dtype), b1: filledTensor([ffn], dtype), b2: filledTensor([hidden], dtype),
                  norm1w: filledTensor([hidden], dtype), norm1b: filledTensor([hidden], dtype),
                  norm2w: filledTensor([hidden], dtype), norm2b: filledTensor([hidden], dtype),
                  kCache: filledTensor([slots, heads, headDim], .f32), vCache: filledTensor([slots, heads, headDim], .f32))
        }
        let head = filledTensor([vocab, hidden], dtype)
        let finalNormW = filledTensor([hidden], dtype), finalNormB = filledTensor([hidden], dtype)
        let h = filledTensor([n, hidden], .f32)
        let a = try! Tensor.zeros([n, hidden]), t = try! Tensor.zeros([n, hidden])
        let q = try! Tensor.zeros([n, heads, headDim]), k = try! Tensor.zeros([n, heads, headDim])
        let v = try! Tensor.zeros([n, heads, headDim]), attended = try! Tensor.zeros([n, heads, headDim])
        let f = try! Tensor.zeros([n, ffn]), logits = try! Tensor.zeros([n, vocab])
        let tables = (0..<n).map { s in (0..<blocksPerSequence).map { Int32(s * blocksPerSequence + $0) } }
        let layout = AttentionLayout(blockSize: blockSize, blockTables: tables,
                                     sequenceOfToken: (0..<n).map { Int32($0) },
                                     positionOfToken: [Int32](repeating: Int32(context), count: n))
        let backend = CPUBackend()
        let flat = { (x: Tensor) in x.reshaped([n, hidden]) }
        func step() {
            for layer in model {
                backend.layerNorm(h, weight: layer.norm1w, bias: layer.norm1b, eps: 1e-5, into: a)
                backend.linear(a, weight: layer.q, bias: layer.bq, into: flat(q))
                backend.linear(a, weight: layer.k, bias: layer.bk, into: flat(k))
                backend.linear(a, weight: layer.v, bias: layer.bv, into: flat(v))
                backend.writeKV(k: k, v: v, kCache: layer.kCache, vCache: layer.vCache, layout: layout)
                backend.attention(q: q, kCache: layer.kCache, vCache: layer.vCache, layout: layout, scale: 0.125, into: attended)
                backend.linear(flat(attended), weight: layer.o, bias: layer.bo, into: t)
                backend.add(h, t, into: h)
                backend.layerNorm(h, weight: layer.norm2w, bias: layer.norm2b, eps: 1e-5, into: a)
                backend.linear(a, weight: layer.fc1, bias: layer.b1, into: f)
                backend.activation(.relu, f, into: f)
                backend.linear(f, weight: layer.fc2, bias: layer.b2, into: t)
                backend.add(h, t, into: h)
            }
            backend.layerNorm(h, weight: finalNormW, bias: finalNormB, eps: 1e-5, into: a)
            backend.linear(a, weight: head, bias: nil, into: logits)
        }
        step()
        var samples = [Double]()
        for _ in 0..<7 { samples.append(measure(step)) }
        samples.sort()
        return samples[samples.count / 2]
    }

    /// Clock frequency from a dependent chain of 8-lane FMAs (4 cycles each).
    public static func measureGHz() -> Double {
        var best = Double.infinity
        let iterations = 20_000_000
        let m = SIMD8<Float>(repeating: 0.999_999), c = SIMD8<Float>(repeating: 1e-6)
        for _ in 0..<3 {
            var chain = SIMD8<Float>(repeating: 1)
            best = min(best, measure { chain = fmaChain(chain, m, c, iterations) })
            blackHole(chain.sum())
        }
        return 4 * Double(iterations) / best / 1e9
    }

    @inline(never)
    static func fmaChain(_ start: SIMD8<Float>, _ m: SIMD8<Float>, _ c: SIMD8<Float>, _ count: Int) -> SIMD8<Float> {
        var v = start
        for _ in 0..<count { v = c.addingProduct(v, m) }
        return v
    }

    @inline(never) static func blackHole(_ value: Float) {
        if value == .infinity { print("", terminator: "") }
    }

    static func nominalMHz() -> Double? {
        guard let file = fopen("/proc/cpuinfo", "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            let text = String(cString: line!)
            if text.hasPrefix("cpu MHz"), let colon = text.firstIndex(of: ":") {
                return Double(text[text.index(after: colon)...].trimmingCharacters())
            }
        }
        return nil
    }

    /// A tensor of pseudo-random values in ±0.05 (a block of 4093 values, repeated: the values do
    /// not matter for timing, only that they are ordinary numbers, and filling 124 M of them one by
    /// one would take longer than the measurements).
    static func filledTensor(_ shape: [Int], _ dtype: DType) -> Tensor {
        let t = try! Tensor.zeros(shape, dtype: dtype)  // benchmark-sized allocation
        let period = 4093
        var state: UInt32 = 12345
        let block = (0..<period).map { _ -> Float in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(Int32(bitPattern: state) >> 8) / Float(1 << 23) * 0.05
        }
        let converted = UnsafeMutableRawPointer.allocate(byteCount: period * dtype.byteSize, alignment: 64)
        defer { converted.deallocate() }
        block.withUnsafeBufferPointer {
            DTypeConversion.convert(from: UnsafeRawPointer($0.baseAddress!), .f32, to: converted, dtype, count: period)
        }
        var offset = 0
        while offset < t.count {
            let n = min(period, t.count - offset)
            (t.rawPointer + offset * dtype.byteSize).copyMemory(from: converted, byteCount: n * dtype.byteSize)
            offset += n
        }
        return t
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    static func measure(_ body: () -> Void) -> Double {
        let start = now()
        body()
        return now() - start
    }

    static func format(_ value: Double, _ decimals: Int) -> String {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        var text = "\(rounded)"
        if let dot = text.firstIndex(of: ".") {
            let have = text.distance(from: dot, to: text.endIndex) - 1
            if decimals == 0 { text = String(text[..<dot]) } else if have < decimals { text += String(repeating: "0", count: decimals - have) }
        }
        return text
    }

    static func formatTime(_ seconds: Double) -> String {
        seconds < 1e-3 ? "\(format(seconds * 1e6, 1)) µs" : "\(format(seconds * 1e3, 2)) ms"
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\n" || $0 == "\t" }.reversed())
    }
}

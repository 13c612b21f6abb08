import CCUDA

/// Ops of the CUDA backend beyond the shared op set: token choice, dtype-converting copies (weight
/// sync), and the tensor-parallel all-reduce.
extension CUDABackend: DeviceTokenSelection {
    /// `out[n] = argmax(x[n, :])` (lowest index on ties). x: [N, V] f32; out: [N] i32.
    public func argmax(_ x: Tensor, into out: Tensor) {
        let cols = x.shape.last ?? 0
        let rows = cols == 0 ? 0 : x.count / cols
        precondition(x.dtype == .f32 && out.dtype == .i32 && out.count == rows, "argmax of \(x) into \(out)")
        let (xa, oa) = (address(x, "x"), address(out, "out"))
        if rows == 0 { return }
        perform("argmax") {
            try launch("argmax_f32", grid: (rows, 1, 1), block: (SamplingKernels.threads, 1, 1),
                       [.address(xa), .address(oa), .int32(Int32(cols))])
        }
    }

    public func greedyTokens(_ logits: Tensor) throws -> [(token: Int32, logprob: Float)] {
        let cols = logits.shape.last ?? 0
        let rows = cols == 0 ? 0 : logits.count / cols
        precondition(logits.dtype == .f32, "greedy tokens of \(logits)")
        if rows == 0 { return [] }
        let picks = try empty([rows, 2], dtype: .f32)
        let (xa, pa) = (address(logits, "logits"), address(picks, "picks"))
        let chunks = SamplingKernels.greedyChunks(rows: rows, cols: cols, multiprocessors: cudaDevice.properties.multiprocessorCount)
        perform("greedy") {
            if chunks > 1 {
                let partials = try workspace(.greedyPartials, bytes: rows * chunks * 3 * 4)
                let counters = try workspace(.greedyCounters, bytes: rows * 4, zeroed: true)
                try launch("greedy_split_f32", grid: (rows, chunks, 1), block: (SamplingKernels.threads, 1, 1),
                           [.address(xa), .address(partials), .address(counters), .address(pa), .int32(Int32(cols))])
            } else {
                try launch("greedy_f32", grid: (rows, 1, 1), block: (SamplingKernels.logitThreads, 1, 1),
                           [.address(xa), .address(pa), .int32(Int32(cols))])
            }
        }
        let host = try download(picks)
        let words = host.pointer(Float.self)
        return (0..<rows).map { (Int32(bitPattern: words[2 * $0].bitPattern), words[2 * $0 + 1]) }
    }

    /// Samples `out[n]` from the (unnormalised) probabilities `p[n, :]` by inverse CDF with `uniforms[n]`
    /// in [0, 1). p: [N, V] f32; out: [N] i32.
    public func sample(probabilities p: Tensor, uniforms: [Float], into out: Tensor) {
        let cols = p.shape.last ?? 0
        let rows = cols == 0 ? 0 : p.count / cols
        precondition(p.dtype == .f32 && out.dtype == .i32 && out.count == rows && uniforms.count == rows,
                     "sample from \(p) with \(uniforms.count) uniforms into \(out)")
        let (pa, oa) = (address(p, "probabilities"), address(out, "out"))
        if rows == 0 { return }
        perform("sample") {
            let ua = try upload(uniforms)
            try launch("sample_f32", grid: (rows, 1, 1), block: (SamplingKernels.threads, 1, 1),
                       [.address(pa), .address(ua), .address(oa), .int32(Int32(cols))])
        }
    }

    /// Samples `tokens[n]` from the logits `x[n, :]` at `temperature` (> 0) with top-k (`topK` ≤ 0 or
    /// ≥ V: off) and top-p (`topP` = 1: off) truncation, by inverse CDF with `uniforms[n]` in [0, 1) over
    /// the kept tokens in index order (`sample_logits_f32`); `logprobs[n]` is the token's raw
    /// log-probability. `scratch` receives the row's unnormalised probabilities at the temperature.
    /// x, scratch: [N, V] f32; tokens: [N] i32; logprobs: [N] f32.
    public func sample(logits x: Tensor, temperature: Float, topK: Int, topP: Float, uniforms: [Float],
                       tokens: Tensor, logprobs: Tensor, scratch: Tensor) {
        let cols = x.shape.last ?? 0
        let rows = cols == 0 ? 0 : x.count / cols
        precondition(x.dtype == .f32 && scratch.dtype == .f32 && scratch.count == x.count
                     && tokens.dtype == .i32 && tokens.count == rows && logprobs.dtype == .f32 && logprobs.count == rows
                     && uniforms.count == rows, "sample from logits \(x) with \(uniforms.count) uniforms into \(tokens), \(logprobs)")
        precondition(temperature > 0 && topP > 0 && topP <= 1, "sample at temperature \(temperature), top-p \(topP)")
        let (xa, ta, la, sa) = (address(x, "logits"), address(tokens, "tokens"), address(logprobs, "logprobs"), address(scratch, "scratch"))
        if rows == 0 { return }
        perform("sample") {
            let ua = try upload(uniforms)
            try launch("sample_logits_f32", grid: (rows, 1, 1), block: (SamplingKernels.logitThreads, 1, 1),
                       [.address(xa), .address(ua), .address(ta), .address(la), .address(sa), .int32(Int32(cols)),
                        .float(1 / temperature), .int32(Int32(clamping: topK)), .float(topP)])
        }
    }

    /// Samples a token per row of `logits` ([N, V] f32) and brings back the tokens and their raw
    /// log-probabilities: two downloads of N numbers (see ``DeviceTokenSelection/sampleTokens``).
    public func sampleTokens(_ logits: Tensor, temperature: Float, topK: Int, topP: Float,
                             uniforms: [Float]) throws -> [(token: Int32, logprob: Float)] {
        let cols = logits.shape.last ?? 0
        let rows = cols == 0 ? 0 : logits.count / cols
        let tokens = try zeros([rows], dtype: .i32), logprobs = try zeros([rows], dtype: .f32)
        // The kernel writes every element of the scratch before reading it: no need to zero it.
        let scratch = try empty([max(logits.count, 1)], dtype: .f32)
        sample(logits: logits, temperature: temperature, topK: topK, topP: topP, uniforms: uniforms,
               tokens: tokens, logprobs: logprobs, scratch: scratch)
        // The downloads wait for the kernel; the scratch must outlive it.
        let (chosen, values) = try withExtendedLifetime(scratch) {
            (try download(tokens).integers(), try download(logprobs).floats())
        }
        return zip(chosen, values).map { (Int32($0), $1) }
    }

    /// Copies `source` into `destination` (same element count, any of f32 / bf16 / f16, both on this
    /// device or mapped into it), converting the dtype.
    public func copy(_ source: Tensor, into destination: Tensor) {
        precondition(source.count == destination.count, "copy of \(source) into \(destination)")
        let (sa, da) = (address(source, "source"), address(destination, "destination"))
        if source.count == 0 { return }
        perform("copy") {
            if source.dtype == destination.dtype {
                try CUDAError.check(driver.cuMemcpyDtoDAsync(da, sa, source.byteCount, stream.handle), "cuMemcpyDtoDAsync_v2")
            } else {
                try launch("convert_\(Self.kernelSuffix(source.dtype))_\(Self.kernelSuffix(destination.dtype))",
                           grid: (Self.blocks(source.count), 1, 1), block: (256, 1, 1),
                           [.address(sa), .address(da), .int64(Int64(source.count))])
            }
        }
    }

    /// Strided 2-D copy with dtype conversion: `dst[r * dstPitch + c] = src[r * srcPitch + c]` for
    /// `r < rows`, `c < cols`. Addresses are device addresses (this device's memory or an IPC mapping
    /// in it); pitches are in elements of each side's dtype. Weight sync takes a tensor-parallel slice of
    /// a trainer's flat buffer into an engine weight with it. The caller keeps both memories alive
    /// until the copy is done (``synchronize()``).
    ///
    /// One operation on the stream: the copy engine's `cuMemcpyDtoDAsync` when both sides are one
    /// contiguous run of the same dtype, `cuMemcpy2DAsync` for strided rows of the same dtype, and the
    /// `copy2d` kernel when the dtype converts.
    public func copy2D(source: UInt64, sourcePitch: Int, destination: UInt64, destinationPitch: Int,
                       rows: Int, cols: Int, sourceType: DType, destinationType: DType) {
        precondition(rows >= 0 && cols >= 0 && sourcePitch >= cols && destinationPitch >= cols, "copy2D of \(rows)×\(cols)")
        if rows == 0 || cols == 0 { return }
        let size = sourceType.byteSize
        if sourceType == destinationType {
            if rows == 1 || (sourcePitch == cols && destinationPitch == cols) {
                perform("copy2D") {
                    try CUDAError.check(driver.cuMemcpyDtoDAsync(destination, source, rows * cols * size, stream.handle), "cuMemcpyDtoDAsync_v2")
                }
                return
            }
            if sourcePitch * size <= Int(Int32.max) && destinationPitch * size <= Int(Int32.max) {
                var copy = CUDA_MEMCPY2D()
                copy.srcMemoryType = CU_MEMORYTYPE_DEVICE
                copy.srcDevice = source
                copy.srcPitch = sourcePitch * size
                copy.dstMemoryType = CU_MEMORYTYPE_DEVICE
                copy.dstDevice = destination
                copy.dstPitch = destinationPitch * size
                copy.WidthInBytes = cols * size
                copy.Height = rows
                perform("copy2D") {
                    try CUDAError.check(driver.cuMemcpy2DAsync(&copy, stream.handle), "cuMemcpy2DAsync_v2")
                }
                return
            }
            // Pitches beyond the driver's limit: the kernel below copies them.
        }
        perform("copy2D") {
            try launch("copy2d_\(Self.kernelSuffix(sourceType))_\(Self.kernelSuffix(destinationType))",
                       grid: (min((cols + 255) / 256, 1024), min(rows, 65535), 1), block: (256, 1, 1),
                       [.address(source), .int64(Int64(sourcePitch)), .address(destination), .int64(Int64(destinationPitch)),
                        .int64(Int64(rows)), .int64(Int64(cols))])
        }
    }
}

/// Backward of layer norm and RMS norm, recomputing each row's statistics from x exactly as the
/// forward does (so a recomputed forward and this backward agree to the bit).
///
/// Rows split over threads in fixed chunks; each chunk sums its rows' contributions to the
/// parameter gradients into its own partial buffer, and the partials are added in chunk order, so
/// results do not depend on scheduling.
extension CPUKernels {
    /// `g = dy·w`, `x̂ = (x − mean)·rstd`: `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))`, `dWeight += Σ dy·x̂`,
    /// `dBias += Σ dy`. x, dy, dx: [rows, width]; dx may alias dy.
    public static func layerNormBackward(
        _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, rows: Int, width: Int, weight: UnsafePointer<Float>, eps: Float,
        into dx: UnsafeMutablePointer<Float>, weightGradient dWeight: UnsafeMutablePointer<Float>, biasGradient dBias: UnsafeMutablePointer<Float>
    ) {
        guard width > 0, rows > 0 else { return }
        withPartials(rows: rows, width: width, buffers: 2, into: [dWeight, dBias]) { range, partial in
            let pw = partial, pb = partial + width
            for r in range {
                let xr = x + r * width, gr = dy + r * width, out = dx + r * width
                let mean = VectorMath.sum(xr, width) / Float(width)
                let variance = VectorMath.squaredDeviation(xr, width, around: mean) / Float(width)
                let rstd = 1 / (variance + eps).squareRoot()
                let sums = layerNormRowSums(xr, gr, weight, width, mean: mean, rstd: rstd)
                layerNormRowBackward(xr, gr, weight, width, mean: mean, rstd: rstd,
                                     meanG: sums.0 / Float(width), meanGX: sums.1 / Float(width),
                                     dx: out, dWeight: pw, dBias: pb)
            }
        }
    }

    /// `g = dy·w`, `r = 1/sqrt(mean(x²) + eps)`: `dx = r·g − x·r³·mean(g·x)`, `dWeight += Σ dy·x·r`.
    /// x, dy, dx: [rows, width]; dx may alias dy.
    public static func rmsNormBackward(
        _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, rows: Int, width: Int, weight: UnsafePointer<Float>, eps: Float,
        into dx: UnsafeMutablePointer<Float>, weightGradient dWeight: UnsafeMutablePointer<Float>
    ) {
        guard width > 0, rows > 0 else { return }
        withPartials(rows: rows, width: width, buffers: 1, into: [dWeight]) { range, partial in
            for r in range {
                let xr = x + r * width, gr = dy + r * width
                let meanSquare = VectorMath.squaredDeviation(xr, width, around: 0) / Float(width)
                let rms = 1 / (meanSquare + eps).squareRoot()
                let gx = layerNormRowSums(xr, gr, weight, width, mean: 0, rstd: 1).1
                rmsNormRowBackward(xr, gr, weight, width, rms: rms, coefficient: rms * rms * rms * gx / Float(width),
                                   dx: dx + r * width, dWeight: partial)
            }
        }
    }

    /// Runs `body(rows, partial)` on fixed chunks of rows, each with `buffers × width` zeroed floats,
    /// then adds buffer i of every chunk, in chunk order, into `targets[i]`.
    static func withPartials(
        rows: Int, width: Int, buffers: Int, into targets: [UnsafeMutablePointer<Float>],
        _ body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void
    ) {
        let chunks = Parallel.chunkCount(total: rows, grain: max(1, elementwiseGrain / width))
        let stride = buffers * width
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: chunks * stride)
        defer { partials.deallocate() }
        partials.initialize(repeating: 0, count: chunks * stride)
        Parallel.forEach(count: chunks) { c in
            body(rows * c / chunks ..< rows * (c + 1) / chunks, partials + c * stride)
        }
        for c in 0..<chunks {
            for (i, target) in targets.enumerated() {
                VectorMath.add(target, partials + c * stride + i * width, target, width)
            }
        }
    }

    /// `(Σ g, Σ g·x̂)` of one row with `g = dy·w`, `x̂ = (x − mean)·rstd`.
    static func layerNormRowSums(
        _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ n: Int, mean: Float, rstd: Float
    ) -> (Float, Float) {
        let mv = SIMD8<Float>(repeating: mean), rv = SIMD8<Float>(repeating: rstd)
        var sg = SIMD8<Float>(), sgx = SIMD8<Float>()
        var i = 0
        while i + 8 <= n {
            let g = load(dy, i) * load(w, i)
            sg += g
            sgx.addProduct(g, (load(x, i) - mv) * rv)
            i += 8
        }
        var a = sg.sum(), b = sgx.sum()
        while i < n {
            let g = dy[i] * w[i]
            a += g
            b += g * ((x[i] - mean) * rstd)
            i += 1
        }
        return (a, b)
    }

    static func layerNormRowBackward(
        _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ n: Int, mean: Float, rstd: Float,
        meanG: Float, meanGX: Float, dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>
    ) {
        let mv = SIMD8<Float>(repeating: mean), rv = SIMD8<Float>(repeating: rstd)
        let ag = SIMD8<Float>(repeating: meanG), agx = SIMD8<Float>(repeating: meanGX)
        var i = 0
        while i + 8 <= n {
            let d = load(dy, i), xhat = (load(x, i) - mv) * rv
            store(load(dWeight, i).addingProduct(d, xhat), dWeight, i)
            store(load(dBias, i) + d, dBias, i)
            store(rv * (d * load(w, i) - ag - xhat * agx), dx, i)
            i += 8
        }
        while i < n {
            let d = dy[i], xhat = (x[i] - mean) * rstd
            dWeight[i] += d * xhat
            dBias[i] += d
            dx[i] = rstd * (d * w[i] - meanG - xhat * meanGX)
            i += 1
        }
    }

    static func rmsNormRowBackward(
        _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ n: Int, rms: Float, coefficient: Float,
        dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>
    ) {
        let rv = SIMD8<Float>(repeating: rms), cv = SIMD8<Float>(repeating: coefficient)
        var i = 0
        while i + 8 <= n {
            let d = load(dy, i), xv = load(x, i)
            store(load(dWeight, i).addingProduct(d, xv * rv), dWeight, i)
            store(rv * d * load(w, i) - xv * cv, dx, i)
            i += 8
        }
        while i < n {
            let d = dy[i]
            dWeight[i] += d * (x[i] * rms)
            dx[i] = rms * d * w[i] - x[i] * coefficient
            i += 1
        }
    }
}

@inline(always) private func load(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(always) private func load(_ p: UnsafeMutablePointer<Float>, _ i: Int) -> SIMD8<Float> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(always) private func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
    UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: SIMD8<Float>.self)
}

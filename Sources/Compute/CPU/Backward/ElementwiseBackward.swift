/// Backward of the elementwise ops (activations, SwiGLU), scaling, and the sum of squares that
/// gradient clipping needs. Each is one vectorised loop per contiguous chunk, chunks over threads.
extension CPUKernels {
    /// `dx = dy · act'(x)`; dx may alias dy.
    public static func activationBackward(
        _ kind: Activation, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
        into dx: UnsafeMutablePointer<Float>, count: Int
    ) {
        forEachChunk(count) { start, n in
            ElementwiseBackward.apply(kind, x + start, dy + start, dx + start, n)
        }
    }

    /// `dGate = dy · up · silu'(gate)`, `dUp = dy · silu(gate)`.
    public static func swiGLUBackward(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
        gateGradient dGate: UnsafeMutablePointer<Float>, upGradient dUp: UnsafeMutablePointer<Float>, count: Int
    ) {
        forEachChunk(count) { start, n in
            ElementwiseBackward.swiGLU(gate + start, up + start, dy + start, dGate + start, dUp + start, n)
        }
    }

    /// `y = x · factor`; y may alias x.
    public static func scale(_ x: UnsafePointer<Float>, by factor: Float, into y: UnsafeMutablePointer<Float>, count: Int) {
        forEachChunk(count) { start, n in ElementwiseBackward.scale(x + start, factor, y + start, n) }
    }

    /// Σ x², in f64: blocks of 64 elements are summed in f32 (eight lanes of eight), the block sums in
    /// f64; fixed chunks are added in order, so the result does not depend on the thread count's timing.
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
        if count == 0 { return 0 }
        let blocks = (count + 63) / 64
        let chunks = Parallel.chunkCount(total: blocks, grain: max(1, 4 * elementwiseGrain / 64))
        var partials = [Double](repeating: 0, count: chunks)
        partials.withUnsafeMutableBufferPointer { partials in
            Parallel.forEach(count: chunks) { c in
                let b0 = blocks * c / chunks, b1 = blocks * (c + 1) / chunks
                let start = b0 * 64, end = min(count, b1 * 64)
                partials[c] = ElementwiseBackward.sumOfSquares(x + start, end - start)
            }
        }
        return partials.reduce(0, +)
    }
}

/// The per-element loops (kept in one file so that debug builds inline their helpers).
enum ElementwiseBackward {
    typealias V = SIMD8<Float>

    static func apply(_ kind: Activation, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        switch kind {
        case .relu:
            while i + 8 <= count { store(load(dy, i).replacing(with: 0, where: load(x, i) .<= 0), dx, i); i += 8 }
        case .silu:
            while i + 8 <= count { store(load(dy, i) * siluDerivative(load(x, i)), dx, i); i += 8 }
        case .gelu:
            while i + 8 <= count { store(load(dy, i) * geluDerivative(load(x, i)), dx, i); i += 8 }
        case .geluTanh:
            while i + 8 <= count { store(load(dy, i) * geluTanhDerivative(load(x, i)), dx, i); i += 8 }
        }
        if i < count {
            // The tail goes through the same vector code (padding lanes are 0 and discarded).
            var xv = V(), dv = V()
            for j in 0..<(count - i) {
                xv[j] = x[i + j]
                dv[j] = dy[i + j]
            }
            let r: V
            switch kind {
            case .relu: r = dv.replacing(with: 0, where: xv .<= 0)
            case .silu: r = dv * siluDerivative(xv)
            case .gelu: r = dv * geluDerivative(xv)
            case .geluTanh: r = dv * geluTanhDerivative(xv)
            }
            for j in 0..<(count - i) { dx[i + j] = r[j] }
        }
    }

    static func swiGLU(
        _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
        _ dGate: UnsafeMutablePointer<Float>, _ dUp: UnsafeMutablePointer<Float>, _ count: Int
    ) {
        var i = 0
        while i + 8 <= count {
            let g = load(gate, i), d = load(dy, i)
            let s = sigmoid(g)
            store(d * load(up, i) * (s * (1 + g * (1 - s))), dGate, i)
            store(d * (g * s), dUp, i)
            i += 8
        }
        if i < count {
            var g = V(), u = V(), d = V()
            for j in 0..<(count - i) {
                g[j] = gate[i + j]
                u[j] = up[i + j]
                d[j] = dy[i + j]
            }
            let s = sigmoid(g)
            let a = d * u * (s * (1 + g * (1 - s))), b = d * (g * s)
            for j in 0..<(count - i) {
                dGate[i + j] = a[j]
                dUp[i + j] = b[j]
            }
        }
    }

    static func scale(_ x: UnsafePointer<Float>, _ factor: Float, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        while i + 8 <= count { store(load(x, i) * factor, y, i); i += 8 }
        while i < count { y[i] = x[i] * factor; i += 1 }
    }

    static func sumOfSquares(_ x: UnsafePointer<Float>, _ count: Int) -> Double {
        var total = 0.0
        var i = 0
        while i + 64 <= count {
            var a = V(), b = V()
            var j = i
            while j < i + 64 {
                let u = load(x, j), w = load(x, j + 8)
                a.addProduct(u, u)
                b.addProduct(w, w)
                j += 16
            }
            let s = a + b
            total += Double(s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7])
            i += 64
        }
        var tail: Float = 0
        while i < count {
            tail += x[i] * x[i]
            i += 1
        }
        return total + Double(tail)
    }

    @inline(always) static func sigmoid(_ x: V) -> V { 1 / (1 + VectorMath.exp(-x)) }

    /// silu'(x) = s·(1 + x·(1 − s)), s = sigmoid(x) (PyTorch's `silu_backward`).
    @inline(always) static func siluDerivative(_ x: V) -> V {
        let s = sigmoid(x)
        return s * (1 + x * (1 - s))
    }

    /// GELU'(x) = Φ(x) + x·φ(x); Φ comes from the forward's x·Φ(x) (Φ(0) = 1/2).
    @inline(always) static func geluDerivative(_ x: V) -> V {
        let cdf = (VectorMath.gelu(x) / x).replacing(with: 0.5, where: x .== 0)
        let pdf = VectorMath.exp(-0.5 * x * x) * 0.398_942_280_401_432_7
        return cdf.addingProduct(x, pdf)
    }

    /// d/dx of x·σ(2u), u = √(2/π)(x + 0.044715x³): σ(2u) + x·2σ(1 − σ)·√(2/π)(1 + 3·0.044715x²).
    @inline(always) static func geluTanhDerivative(_ x: V) -> V {
        let k: Float = 0.797_884_560_802_865_4
        let u = k * x.addingProduct(0.044_715 * x * x, x)
        let s = sigmoid(2 * u)
        return s + x * (2 * s * (1 - s)) * (k * (1 + 0.134_145 * x * x))
    }

    @inline(always) static func load(_ p: UnsafePointer<Float>, _ i: Int) -> V {
        UnsafeRawPointer(p + i).loadUnaligned(as: V.self)
    }

    @inline(always) static func store(_ v: V, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
        UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: V.self)
    }
}

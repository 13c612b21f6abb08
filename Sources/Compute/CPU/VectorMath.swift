#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Vectorised loops over contiguous f32 arrays: transcendental functions, reductions, scaling.
/// The ops (`Elementwise`, `Softmax`, `Norms`, `Attention`) call these once per row or chunk.
///
/// Everything that runs per element is in this file: debug builds compile each file on its own
/// (no whole-module optimisation), so a helper in another file would be a call per eight elements.
/// Inner loops use only operations the standard library lowers directly to AVX2 (`+ - * /`, FMA,
/// comparisons and `replacing(with:where:)`, `rounded`, bit casts and integer shifts); its generic
/// conversions and `pointwiseMax`/`squareRoot` are element loops that are not reliably inlined.
enum VectorMath {
    typealias V = SIMD8<Float>

    // MARK: Array loops

    /// `y[i] = act(x[i])`; x and y may be the same memory.
    static func apply(_ kind: Activation, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        // One loop per function, written out: closures here end up as calls per eight elements.
        var i = 0
        switch kind {
        case .relu:
            while i &+ 8 <= count { store(relu(load(x, i)), y, i); i &+= 8 }
        case .gelu:
            while i &+ 8 <= count { store(gelu(load(x, i)), y, i); i &+= 8 }
        case .geluTanh:
            while i &+ 8 <= count { store(geluTanh(load(x, i)), y, i); i &+= 8 }
        case .silu:
            while i &+ 8 <= count { store(silu(load(x, i)), y, i); i &+= 8 }
        }
        if i < count {
            // The tail goes through the same vector code, so every element gets the same arithmetic.
            var v = V()
            for j in 0..<(count &- i) { v[j] = x[i &+ j] }
            let r: V
            switch kind {
            case .relu: r = relu(v)
            case .gelu: r = gelu(v)
            case .geluTanh: r = geluTanh(v)
            case .silu: r = silu(v)
            }
            for j in 0..<(count &- i) { y[i &+ j] = r[j] }
        }
    }

    /// `y[i] = silu(gate[i]) · up[i]`; y may alias either input.
    static func siluProduct(_ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        while i &+ 8 <= count {
            store(silu(load(gate, i)) * load(up, i), y, i)
            i &+= 8
        }
        if i < count {
            var g = V(), u = V()
            for j in 0..<(count &- i) {
                g[j] = gate[i &+ j]
                u[j] = up[i &+ j]
            }
            let r = silu(g) * u
            for j in 0..<(count &- i) { y[i &+ j] = r[j] }
        }
    }

    /// `y[i] = a[i] + b[i]`; y may alias either input.
    static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        while i &+ 8 <= count {
            store(load(a, i) + load(b, i), y, i)
            i &+= 8
        }
        while i < count {
            y[i] = a[i] + b[i]
            i &+= 1
        }
    }

    /// Largest element (−∞ for none).
    static func maximum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = -Float.infinity
        var i = 0
        if n >= 8 {
            var v = load(x, 0)
            i = 8
            while i &+ 8 <= n {
                v = maximum(v, load(x, i))
                i &+= 8
            }
            for j in 0..<8 { m = Swift.max(m, v[j]) }
        }
        while i < n {
            m = Swift.max(m, x[i])
            i &+= 1
        }
        return m
    }

    /// Σ exp(x[i] − m), storing the exponentials into `y` when given (which may be x).
    static func exponentialSum(_ x: UnsafePointer<Float>, _ n: Int, minus m: Float, into y: UnsafeMutablePointer<Float>?) -> Float {
        let shift = V(repeating: -m)
        var s0 = V(), s1 = V()
        var i = 0
        while i &+ 16 <= n {
            let e0 = exp(load(x, i) + shift), e1 = exp(load(x, i &+ 8) + shift)
            if let y {
                store(e0, y, i)
                store(e1, y, i &+ 8)
            }
            s0 += e0
            s1 += e1
            i &+= 16
        }
        while i &+ 8 <= n {
            let e = exp(load(x, i) + shift)
            if let y { store(e, y, i) }
            s0 += e
            i &+= 8
        }
        if i < n {
            // Padding lanes hold −∞, whose exponential is 0.
            var v = V(repeating: -.infinity)
            for j in 0..<(n &- i) { v[j] = x[i &+ j] }
            let e = exp(v + shift)
            if let y { for j in 0..<(n &- i) { y[i &+ j] = e[j] } }
            s1 += e
        }
        return horizontalSum(s0 + s1)
    }

    /// `y[i] *= factor`.
    static func scale(_ y: UnsafeMutablePointer<Float>, _ n: Int, by factor: Float) {
        var i = 0
        while i &+ 8 <= n {
            store(load(y, i) * factor, y, i)
            i &+= 8
        }
        while i < n {
            y[i] *= factor
            i &+= 1
        }
    }

    /// `y[i] = x[i] + offset`.
    static func shift(_ x: UnsafePointer<Float>, _ n: Int, by offset: Float, into y: UnsafeMutablePointer<Float>) {
        var i = 0
        while i &+ 8 <= n {
            store(load(x, i) + offset, y, i)
            i &+= 8
        }
        while i < n {
            y[i] = x[i] + offset
            i &+= 1
        }
    }

    /// Σ x[i].
    static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var a = V(), b = V()
        var i = 0
        while i &+ 16 <= n {
            a += load(x, i)
            b += load(x, i &+ 8)
            i &+= 16
        }
        if i &+ 8 <= n {
            a += load(x, i)
            i &+= 8
        }
        var s = horizontalSum(a + b)
        while i < n {
            s += x[i]
            i &+= 1
        }
        return s
    }

    /// Σ (x[i] − c)².
    static func squaredDeviation(_ x: UnsafePointer<Float>, _ n: Int, around c: Float) -> Float {
        let cv = V(repeating: c)
        var a = V(), b = V()
        var i = 0
        while i &+ 16 <= n {
            let d0 = load(x, i) - cv, d1 = load(x, i &+ 8) - cv
            a.addProduct(d0, d0)
            b.addProduct(d1, d1)
            i &+= 16
        }
        if i &+ 8 <= n {
            let d = load(x, i) - cv
            a.addProduct(d, d)
            i &+= 8
        }
        var s = horizontalSum(a + b)
        while i < n {
            let d = x[i] - c
            s += d * d
            i &+= 1
        }
        return s
    }

    /// `y[i] = (x[i] − shift) · factor · weight[i] + bias[i]` (bias optional).
    static func affine(
        _ x: UnsafePointer<Float>, _ n: Int, shift: Float, factor: Float,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>
    ) {
        let sv = V(repeating: shift), fv = V(repeating: factor)
        var i = 0
        while i &+ 8 <= n {
            let normalized = (load(x, i) - sv) * fv
            let b = bias.map { load($0, i) } ?? V()
            store(b.addingProduct(normalized, load(weight, i)), y, i)
            i &+= 8
        }
        while i < n {
            y[i] = (bias?[i] ?? 0).addingProduct((x[i] - shift) * factor, weight[i])
            i &+= 1
        }
    }

    // MARK: Memory

    @inline(always) static func load(_ p: UnsafePointer<Float>, _ i: Int) -> V {
        UnsafeRawPointer(p + i).loadUnaligned(as: V.self)
    }

    @inline(always) static func store(_ v: V, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
        UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: V.self)
    }

    @inline(always) static func horizontalSum(_ v: V) -> Float {
        var s: Float = 0
        for j in 0..<8 { s += v[j] }
        return s
    }

    // MARK: Eight-lane functions

    @inline(always) static func maximum(_ a: V, _ b: V) -> V { a.replacing(with: b, where: a .< b) }
    @inline(always) static func minimum(_ a: V, _ b: V) -> V { a.replacing(with: b, where: b .< a) }

    @inline(always) static func magnitude(_ x: V) -> V {
        unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: V.self)
    }

    /// e^x to about 1 ulp (Cephes `expf`: range reduction by ln 2 in two parts, degree-6
    /// polynomial). Below −87.34 (where e^x leaves f32's normal range) the result is 0; above 88
    /// it is +∞ (e^88.7 is the largest finite f32), so 1 / (1 + e^x) goes cleanly to 0.
    @inline(always) static func exp(_ x: V) -> V {
        let xc = minimum(maximum(x, V(repeating: -87.336_54)), V(repeating: 88))
        let n = (xc * 1.442_695_04).rounded(.toNearestOrEven)
        // r = x − n·ln 2, with ln 2 split in a part exact in few bits and a correction.
        let r = xc.addingProduct(n, V(repeating: -0.693_359_375)).addingProduct(n, V(repeating: 2.121_944_4e-4))
        var p = V(repeating: 1.987_569_15e-4)
        p = V(repeating: 1.398_199_950_7e-3).addingProduct(p, r)
        p = V(repeating: 8.333_451_907_3e-3).addingProduct(p, r)
        p = V(repeating: 4.166_579_589_4e-2).addingProduct(p, r)
        p = V(repeating: 1.666_666_545_9e-1).addingProduct(p, r)
        p = V(repeating: 5.000_000_120_1e-1).addingProduct(p, r)
        let y = (r + 1).addingProduct(p, r * r)
        // 2^n: n + 127 lands in the low mantissa bits of (n + 127 + 1.5·2^23); shift it into the exponent.
        let biased = unsafeBitCast(n + (12_582_912 + 127), to: SIMD8<UInt32>.self) &<< 23
        let result = y * unsafeBitCast(biased, to: V.self)
        return result.replacing(with: 0, where: x .< -87.336_54).replacing(with: .infinity, where: x .> 88)
    }

    /// Exact GELU, x·Φ(x) with Φ(x) = erfc(−x/√2)/2, to a few parts in 10⁷ relative for all x
    /// (including the far negative tail, where it is tiny).
    ///
    /// erfc(z) for z ≥ 0 is Numerical Recipes' `erfcc` (Chebyshev fit, fractional error < 1.2e-7):
    /// erfc(z) = t·exp(−z² + P(t)), t = 1/(1 + z/2). z² = x²/2 is split exactly with an FMA and the
    /// large part exponentiated on its own, so that its rounding does not enter the small result.
    @inline(always) static func gelu(_ x: V) -> V {
        let z = magnitude(x) * 0.707_106_781_186_547_5
        let t = 1 / (1 + 0.5 * z)
        var p = V(repeating: 0.170_872_77)
        p = V(repeating: -0.822_152_23).addingProduct(p, t)
        p = V(repeating: 1.488_515_87).addingProduct(p, t)
        p = V(repeating: -1.135_203_98).addingProduct(p, t)
        p = V(repeating: 0.278_868_07).addingProduct(p, t)
        p = V(repeating: -0.186_288_06).addingProduct(p, t)
        p = V(repeating: 0.096_784_18).addingProduct(p, t)
        p = V(repeating: 0.374_091_96).addingProduct(p, t)
        p = V(repeating: 1.000_023_68).addingProduct(p, t)
        p = V(repeating: -1.265_512_23).addingProduct(p, t)
        let square = x * x
        let low = (-square).addingProduct(x, x)  // x·x − fl(x·x), exact
        let erfc = t * exp(-0.5 * square) * exp(p - 0.5 * low)
        let phi = (1 - 0.5 * erfc).replacing(with: 0.5 * erfc, where: x .< 0)
        return x * phi
    }

    /// GELU with the tanh approximation, 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), written as
    /// x·sigmoid(2u), which keeps relative precision where 1 + tanh(u) is tiny.
    @inline(always) static func geluTanh(_ x: V) -> V {
        let u = 0.797_884_560_802_865_4 * x.addingProduct(0.044_715 * x * x, x)
        return x / (1 + exp(-2 * u))
    }

    @inline(always) static func silu(_ x: V) -> V {
        x / (1 + exp(-x))
    }

    @inline(always) static func relu(_ x: V) -> V {
        x.replacing(with: 0, where: x .< 0)
    }
}

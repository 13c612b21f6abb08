/// Linear layers, `y = x·Wᵀ + b` with W in Hugging Face's `[out, in]` row-major layout.
///
/// Both operands are contiguous along K, so every output is a dot product: the kernels keep SIMD
/// accumulators along K and reduce them horizontally once per block. Two regimes:
///
/// - one row of x (decode at batch 1) is a matrix-vector product bound by memory bandwidth: stream W
///   once, four rows at a time (eight accumulators);
/// - several rows use register tiles of 4 rows of x × 3 rows of W (twelve 8-lane accumulators: with
///   the operands, the 16 AVX2 registers), with K blocked to ≤ 1024 so that a tile's W rows stay in
///   L1 while the rows of x stream from L2.
///
/// Weight dtypes: f32 is read in place. bf16 is widened in registers when memory is the limit (one
/// to 11 rows of x): a 32-byte load of 16 weights, seen as eight 32-bit lanes, gives the even-indexed
/// weights by a 16-bit left shift and the odd-indexed ones by masking, so x is permuted once per call
/// to match (`evenOddPermutation`); tiles are then 4×2. From 12 rows on, and always for f16, each
/// block of W is converted into per-thread f32 scratch once and shared by all rows of x.
///
/// Work is split over blocks of output features; each thread claims blocks dynamically.
///
/// Index arithmetic: the callers (`CPUBackend`) check every tensor's shape before calling in, so the
/// sizes and strides here describe memory that exists, and no product of an index and a stride can
/// overflow. The loops that run per row, per tile or per element therefore use wrapping operators
/// (`&+`, `&*`), which `-O` compiles without an overflow branch; the preconditions stay.
extension CPUKernels {
    /// Output features per parallel task of the tiled kernel (a multiple of the tile's 3 W rows).
    static let gemmRowsPerTask = 48
    /// Largest K block of the tiled kernel (floats): 4 rows of x and 3 of W then take 28 KiB of L1.
    static let gemmMaxKBlock = 1024
    /// Rows of x per pass over a W block, so that they stay in L2 (128 × 4 KiB = 512 KiB).
    static let gemmRowBlock = 128
    /// Below this many rows of x, bf16 weights are widened in registers rather than in scratch.
    static let gemmBF16InRegisterRows = 12

    /// `y[n, o] = Σ_k x[n, k] · w[o, k] + bias[o]` for `n < rows`, `o < outFeatures`.
    ///
    /// - Parameters:
    ///   - x: f32 rows of `inFeatures` elements, `xRowStride` elements apart.
    ///   - weight: `outFeatures` rows of `inFeatures` elements of `weightType` (f32, bf16 or f16),
    ///     `weightRowStride` elements apart (larger than `inFeatures` for a column slice in place).
    ///   - bias: f32, `outFeatures` elements, or nil.
    ///   - y: f32 rows of `outFeatures` elements, `yRowStride` elements apart; must not overlap x.
    ///   - accumulate: add the products to y (`y += x·Wᵀ`, the training backward's `dW +=`) instead
    ///     of overwriting it; bias must then be nil.
    public static func linear(
        x: UnsafePointer<Float>, xRowStride: Int,
        weight: UnsafeRawPointer, weightType: DType, weightRowStride: Int,
        bias: UnsafePointer<Float>?,
        y: UnsafeMutablePointer<Float>, yRowStride: Int,
        rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = false
    ) {
        precondition(weightType.isFloatingPoint, "linear with \(weightType) weights")
        precondition(!accumulate || bias == nil, "linear: an accumulating product takes no bias")
        let p = LinearProblem(
            x: x, ldx: xRowStride, w: weight, dtype: weightType, isF32: weightType == .f32, isBF16: weightType == .bf16,
            elementSize: weightType.byteSize, ldw: weightRowStride, bias: bias,
            y: y, ldy: yRowStride, n: rows, k: inFeatures, o: outFeatures, accumulate: accumulate)
        if p.n == 0 || p.o == 0 { return }
        if p.k == 0 {
            if accumulate { return }
            for r in 0..<p.n {
                for j in 0..<p.o { p.y[r * p.ldy + j] = p.bias?[j] ?? 0 }
            }
            return
        }
        if p.n == 1 {
            gemv(p)
        } else {
            gemm(p)
        }
    }

    struct LinearProblem {
        var x: UnsafePointer<Float>
        var ldx: Int
        var w: UnsafeRawPointer
        var dtype: DType
        // Derived from dtype once: DType's members live in another file, so each use is a call.
        var isF32: Bool
        var isBF16: Bool
        var elementSize: Int
        var ldw: Int
        var bias: UnsafePointer<Float>?
        var y: UnsafeMutablePointer<Float>
        var ldy: Int
        var n: Int, k: Int, o: Int
        /// Add into y rather than overwrite it.
        var accumulate = false

        /// Start of weight row `r` at column `k`. Wrapping arithmetic: r < o and k < ldw index the weight
        /// the caller allocated, so the byte offset fits in an Int (see "Index arithmetic" above).
        func weight(row r: Int, column k: Int = 0) -> UnsafeRawPointer {
            w + (r &* ldw &+ k) &* elementSize
        }
    }

    // MARK: One row: matrix-vector product

    /// Columns of f16 weight rows converted at a time by the matrix-vector product.
    static let gemvKChunk = 1024

    static func gemv(_ p: LinearProblem) {
        // Below ~128K multiply-adds (~10 µs) a second thread costs more than it saves.
        let taskCount = p.o * p.k < 1 << 17 ? 1 : max(1, min(p.o / 16, 8 * Parallel.width))
        let rowsPerTask = ((p.o + taskCount - 1) / taskCount + 3) & ~3
        let tasks = (p.o + rowsPerTask - 1) / rowsPerTask
        let kChunk = min(p.k, gemvKChunk)
        let scratchPerLane = p.isF32 || p.isBF16 ? 0 : 4 * kChunk
        let lanes = tasks == 1 ? 1 : Parallel.width
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, lanes * scratchPerLane))
        defer { scratch.deallocate() }
        // bf16: x with each block of 16 reordered as (8 even, 8 odd), matching how a 32-byte load of
        // 16 bf16 weights splits into floats (see `dotFourBF16`).
        let permuted = UnsafeMutablePointer<Float>.allocate(capacity: p.isBF16 ? p.k : 1)
        defer { permuted.deallocate() }
        if p.isBF16 { evenOddPermutation(p.x, p.k, into: permuted) }
        Parallel.forEachWithLane(count: tasks) { t, lane in
            let start = t * rowsPerTask
            gemvRows(p, start..<min(p.o, start + rowsPerTask), permutedX: permuted, kChunk: kChunk,
                     scratch: scratch + lane * scratchPerLane)
        }
    }

    /// Output features `range` of a one-row product. f32 weights are read in place, bf16 weights are
    /// widened in registers, f16 rows are converted `kChunk` columns at a time into `scratch`
    /// (4 × kChunk floats, L1-resident).
    static func gemvRows(
        _ p: LinearProblem, _ range: Range<Int>, permutedX: UnsafePointer<Float>, kChunk: Int, scratch: UnsafeMutablePointer<Float>
    ) {
        let k = p.k
        var r = range.lowerBound
        while r &+ 4 <= range.upperBound {
            var s: SIMD4<Float>
            if p.isF32 {
                s = dotFour(p.x, floats(p.weight(row: r)), floats(p.weight(row: r &+ 1)),
                            floats(p.weight(row: r &+ 2)), floats(p.weight(row: r &+ 3)), k)
            } else if p.isBF16 {
                s = dotFourBF16(permutedX, p.weight(row: r), p.weight(row: r &+ 1), p.weight(row: r &+ 2), p.weight(row: r &+ 3), k)
            } else {
                s = SIMD4<Float>()
                var k0 = 0
                while k0 < k {
                    let n = min(kChunk, k - k0)
                    for j in 0..<4 { convertToFloat(p.weight(row: r &+ j, column: k0), p.dtype, count: n, into: scratch + j &* kChunk) }
                    s += dotFour(p.x + k0, scratch, scratch + kChunk, scratch + 2 * kChunk, scratch + 3 * kChunk, n)
                    k0 += n
                }
            }
            if let bias = p.bias { s += UnsafeRawPointer(bias + r).loadUnaligned(as: SIMD4<Float>.self) }
            if p.accumulate { s += UnsafeRawPointer(p.y + r).loadUnaligned(as: SIMD4<Float>.self) }
            UnsafeMutableRawPointer(p.y + r).storeBytes(of: s, as: SIMD4<Float>.self)
            r &+= 4
        }
        while r < range.upperBound {
            var s: Float = 0
            if p.isF32 {
                s = dotOne(p.x, floats(p.weight(row: r)), k)
            } else if p.isBF16 {
                let w = p.weight(row: r)
                s = dotFourBF16(permutedX, w, w, w, w, k)[0]
            } else {
                var k0 = 0
                while k0 < k {
                    let n = min(kChunk, k - k0)
                    convertToFloat(p.weight(row: r, column: k0), p.dtype, count: n, into: scratch)
                    s += dotOne(p.x + k0, scratch, n)
                    k0 += n
                }
            }
            p.y[r] = s + (p.accumulate ? p.y[r] : p.bias?[r] ?? 0)
            r &+= 1
        }
    }

    /// Reorders each full block of 16 elements as its 8 even-indexed then its 8 odd-indexed ones;
    /// the tail (k mod 16) stays in place.
    static func evenOddPermutation(_ x: UnsafePointer<Float>, _ k: Int, into out: UnsafeMutablePointer<Float>) {
        var b = 0
        while b &+ 16 <= k {
            for j in 0..<8 {
                out[b &+ j] = x[b &+ 2 &* j]
                out[b &+ 8 &+ j] = x[b &+ 2 &* j &+ 1]
            }
            b &+= 16
        }
        while b < k {
            out[b] = x[b]
            b &+= 1
        }
    }

    /// Dot products of x (even/odd-permuted per 16) with four bf16 rows. A 32-byte load holds 16
    /// weights as 8 little-endian pairs: shifting each 32-bit lane left by 16 gives the even-indexed
    /// weights as floats, masking off the low half gives the odd-indexed ones — two integer
    /// operations per 16 weights, no shuffles.
    static func dotFourBF16(
        _ x: UnsafePointer<Float>, _ w0: UnsafeRawPointer, _ w1: UnsafeRawPointer,
        _ w2: UnsafeRawPointer, _ w3: UnsafeRawPointer, _ k: Int
    ) -> SIMD4<Float> {
        var e0 = SIMD8<Float>(), e1 = SIMD8<Float>(), e2 = SIMD8<Float>(), e3 = SIMD8<Float>()
        var o0 = SIMD8<Float>(), o1 = SIMD8<Float>(), o2 = SIMD8<Float>(), o3 = SIMD8<Float>()
        var i = 0
        while i &+ 16 <= k {
            let xe = load(x, i), xo = load(x, i &+ 8)
            let u0 = w0.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<UInt32>.self)
            let u1 = w1.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<UInt32>.self)
            let u2 = w2.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<UInt32>.self)
            let u3 = w3.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<UInt32>.self)
            e0.addProduct(xe, evenHalves(u0))
            o0.addProduct(xo, oddHalves(u0))
            e1.addProduct(xe, evenHalves(u1))
            o1.addProduct(xo, oddHalves(u1))
            e2.addProduct(xe, evenHalves(u2))
            o2.addProduct(xo, oddHalves(u2))
            e3.addProduct(xe, evenHalves(u3))
            o3.addProduct(xo, oddHalves(u3))
            i &+= 16
        }
        var s = horizontalSums(e0 + o0, e1 + o1, e2 + o2, e3 + o3)
        while i < k {
            let w = SIMD4(bf16(w0, i), bf16(w1, i), bf16(w2, i), bf16(w3, i))
            s.addProduct(SIMD4(repeating: x[i]), w)
            i &+= 1
        }
        return s
    }

    /// Dot products of x with four rows, 16 columns per step (eight accumulators hide FMA latency).
    static func dotFour(
        _ x: UnsafePointer<Float>, _ w0: UnsafePointer<Float>, _ w1: UnsafePointer<Float>,
        _ w2: UnsafePointer<Float>, _ w3: UnsafePointer<Float>, _ k: Int
    ) -> SIMD4<Float> {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var b0 = SIMD8<Float>(), b1 = SIMD8<Float>(), b2 = SIMD8<Float>(), b3 = SIMD8<Float>()
        var i = 0
        while i &+ 16 <= k {
            let xa = load(x, i), xb = load(x, i &+ 8)
            a0.addProduct(xa, load(w0, i))
            a1.addProduct(xa, load(w1, i))
            a2.addProduct(xa, load(w2, i))
            a3.addProduct(xa, load(w3, i))
            b0.addProduct(xb, load(w0, i &+ 8))
            b1.addProduct(xb, load(w1, i &+ 8))
            b2.addProduct(xb, load(w2, i &+ 8))
            b3.addProduct(xb, load(w3, i &+ 8))
            i &+= 16
        }
        if i &+ 8 <= k {
            let xa = load(x, i)
            a0.addProduct(xa, load(w0, i))
            a1.addProduct(xa, load(w1, i))
            a2.addProduct(xa, load(w2, i))
            a3.addProduct(xa, load(w3, i))
            i &+= 8
        }
        var s = horizontalSums(a0 + b0, a1 + b1, a2 + b2, a3 + b3)
        while i < k {
            s.addProduct(SIMD4(repeating: x[i]), SIMD4(w0[i], w1[i], w2[i], w3[i]))
            i &+= 1
        }
        return s
    }

    static func dotOne(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ k: Int) -> Float {
        var a = SIMD8<Float>(), b = SIMD8<Float>()
        var i = 0
        while i &+ 16 <= k {
            a.addProduct(load(x, i), load(w, i))
            b.addProduct(load(x, i &+ 8), load(w, i &+ 8))
            i &+= 16
        }
        if i &+ 8 <= k {
            a.addProduct(load(x, i), load(w, i))
            i &+= 8
        }
        var s = horizontalSums(a + b, SIMD8(), SIMD8(), SIMD8())[0]
        while i < k {
            s += x[i] * w[i]
            i &+= 1
        }
        return s
    }

    // MARK: Several rows: register-tiled product

    static func gemm(_ p: LinearProblem) {
        let kBlocks = (p.k + gemmMaxKBlock - 1) / gemmMaxKBlock
        // Multiples of 16 keep the bf16 path's even/odd blocks whole within a K block.
        let kBlock = ((p.k + kBlocks - 1) / kBlocks + 15) & ~15
        let rowsPerTask = gemmRowsPerTask
        let tasks = (p.o + rowsPerTask - 1) / rowsPerTask
        let serial = p.n * p.o * p.k < 1 << 17
        let lanes = serial ? 1 : Parallel.width
        // bf16 widened in registers costs integer operations on the FMA ports, 20–25% at large N;
        // converting a block into scratch costs a pass over it, amortised over the rows of x.
        let inRegisters = p.isBF16 && p.n < gemmBF16InRegisterRows
        let scratchPerLane = p.isF32 || inRegisters ? 0 : rowsPerTask * kBlock
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, lanes * scratchPerLane))
        defer { scratch.deallocate() }
        // In-register bf16 reads x with each block of 16 as (8 even, 8 odd), like the matrix-vector product.
        var q = p
        let permuted = UnsafeMutablePointer<Float>.allocate(capacity: inRegisters ? p.n * p.k : 1)
        defer { permuted.deallocate() }
        if inRegisters {
            Parallel.forEachChunk(total: p.n, grain: max(1, 1 << 16 / p.k)) { rows in
                for r in rows { evenOddPermutation(p.x + r * p.ldx, p.k, into: permuted + r * p.k) }
            }
            q.x = UnsafePointer(permuted)
            q.ldx = p.k
        }
        if serial {
            for t in 0..<tasks {
                gemmTask(q, t * rowsPerTask ..< min(p.o, (t + 1) * rowsPerTask), kBlock: kBlock, bf16InRegisters: inRegisters,
                         scratch: scratch)
            }
        } else {
            Parallel.forEachWithLane(count: tasks) { t, lane in
                gemmTask(q, t * rowsPerTask ..< min(p.o, (t + 1) * rowsPerTask), kBlock: kBlock, bf16InRegisters: inRegisters,
                         scratch: scratch + lane * scratchPerLane)
            }
        }
    }

    /// Output features `outputs` for all rows of x. f32 weights are read in place; bf16 weights are
    /// widened in registers when `bf16InRegisters` (x permuted); otherwise bf16/f16 weights are
    /// converted into `scratch` (`outputs.count × kBlock` floats) one K block at a time.
    static func gemmTask(
        _ p: LinearProblem, _ outputs: Range<Int>, kBlock: Int, bf16InRegisters: Bool, scratch: UnsafeMutablePointer<Float>
    ) {
        let o0 = outputs.lowerBound, count = outputs.count
        var k0 = 0
        while k0 < p.k {
            let kl = min(kBlock, p.k - k0)
            var w = UnsafePointer(scratch)
            var ldw = kBlock
            if p.isF32 {
                w = floats(p.weight(row: o0, column: k0))
                ldw = p.ldw
            } else if !bf16InRegisters {
                for r in 0..<count {
                    convertToFloat(p.weight(row: o0 &+ r, column: k0), p.dtype, count: kl, into: scratch + r &* kBlock)
                }
            }
            let accumulate = k0 > 0 || p.accumulate
            var n0 = 0
            while n0 < p.n {
                let n1 = min(p.n, n0 + gemmRowBlock)
                // bf16 tiles are 4×2: widening needs registers that a third W row would take.
                let step = bf16InRegisters ? 2 : 3
                // Per tile: wrapping index arithmetic (offsets within x, W and y, which the caller allocated).
                var j = 0
                while j < count {
                    let cols = min(step, count &- j)
                    let bias = accumulate ? nil : p.bias.map { $0 + (o0 &+ j) }
                    var i = n0
                    while i < n1 {
                        if bf16InRegisters {
                            tileBF16(rows: min(4, n1 &- i), cols: cols,
                                     x: p.x + (i &* p.ldx &+ k0), ldx: p.ldx, w: p.weight(row: o0 &+ j, column: k0), ldw: p.ldw &* 2,
                                     k: kl, y: p.y + (i &* p.ldy &+ o0 &+ j), ldy: p.ldy, bias: bias, accumulate: accumulate)
                        } else {
                            tile(rows: min(4, n1 &- i), cols: cols,
                                 x: p.x + (i &* p.ldx &+ k0), ldx: p.ldx, w: w + j &* ldw, ldw: ldw, k: kl,
                                 y: p.y + (i &* p.ldy &+ o0 &+ j), ldy: p.ldy, bias: bias, accumulate: accumulate)
                        }
                        i &+= 4
                    }
                    j &+= step
                }
                n0 = n1
            }
            k0 += kl
        }
    }

    /// Dispatches to the tile kernel specialised for the shape (full tiles are 4×3; edges smaller).
    @inline(never)
    static func tile(
        rows: Int, cols: Int, x: UnsafePointer<Float>, ldx: Int, w: UnsafePointer<Float>, ldw: Int, k: Int,
        y: UnsafeMutablePointer<Float>, ldy: Int, bias: UnsafePointer<Float>?, accumulate: Bool
    ) {
        switch (rows, cols) {
        case (4, 3): tile(4, 3, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (4, 2): tile(4, 2, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (4, 1): tile(4, 1, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (3, 3): tile(3, 3, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (3, 2): tile(3, 2, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (3, 1): tile(3, 1, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (2, 3): tile(2, 3, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (2, 2): tile(2, 2, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (2, 1): tile(2, 1, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (1, 3): tile(1, 3, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (1, 2): tile(1, 2, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        default: tile(1, 1, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        }
    }

    /// The micro-kernel: `rows` (≤ 4) rows of x against `cols` (≤ 3) rows of W over k elements.
    /// Inlined with constant `rows`/`cols`, so the unused accumulators and branches fold away.
    @inline(always)
    static func tile(
        _ rows: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ w: UnsafePointer<Float>, _ ldw: Int,
        _ k: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ bias: UnsafePointer<Float>?, _ accumulate: Bool
    ) {
        let (x0, x1, x2, x3) = rowPointers(x, ldx, rows)
        let w0 = w
        let w1 = w + (cols > 1 ? ldw : 0)
        let w2 = w + (cols > 2 ? 2 &* ldw : 0)
        var c00 = SIMD8<Float>(), c01 = SIMD8<Float>(), c02 = SIMD8<Float>()
        var c10 = SIMD8<Float>(), c11 = SIMD8<Float>(), c12 = SIMD8<Float>()
        var c20 = SIMD8<Float>(), c21 = SIMD8<Float>(), c22 = SIMD8<Float>()
        var c30 = SIMD8<Float>(), c31 = SIMD8<Float>(), c32 = SIMD8<Float>()
        var i = 0
        while i &+ 8 <= k {
            let b0 = load(w0, i)
            let b1 = cols > 1 ? load(w1, i) : b0
            let b2 = cols > 2 ? load(w2, i) : b0
            let a0 = load(x0, i)
            c00.addProduct(a0, b0)
            if cols > 1 { c01.addProduct(a0, b1) }
            if cols > 2 { c02.addProduct(a0, b2) }
            if rows > 1 {
                let a1 = load(x1, i)
                c10.addProduct(a1, b0)
                if cols > 1 { c11.addProduct(a1, b1) }
                if cols > 2 { c12.addProduct(a1, b2) }
            }
            if rows > 2 {
                let a2 = load(x2, i)
                c20.addProduct(a2, b0)
                if cols > 1 { c21.addProduct(a2, b1) }
                if cols > 2 { c22.addProduct(a2, b2) }
            }
            if rows > 3 {
                let a3 = load(x3, i)
                c30.addProduct(a3, b0)
                if cols > 1 { c31.addProduct(a3, b1) }
                if cols > 2 { c32.addProduct(a3, b2) }
            }
            i &+= 8
        }
        // Lane r of s_j is the dot product of x row r with W row j.
        var s0 = horizontalSums(c00, c10, c20, c30)
        var s1 = horizontalSums(c01, c11, c21, c31)
        var s2 = horizontalSums(c02, c12, c22, c32)
        while i < k {
            let xv = SIMD4(x0[i], x1[i], x2[i], x3[i])
            s0.addProduct(xv, SIMD4(repeating: w0[i]))
            if cols > 1 { s1.addProduct(xv, SIMD4(repeating: w1[i])) }
            if cols > 2 { s2.addProduct(xv, SIMD4(repeating: w2[i])) }
            i &+= 1
        }
        storeTile(rows, cols, s0, s1, s2, y, ldy, bias, accumulate)
    }

    /// `tile` for bf16 weights: `w` is the raw first W row, rows `ldw` bytes apart; x is even/odd
    /// permuted per 16 (see `evenOddPermutation`).
    @inline(never)
    static func tileBF16(
        rows: Int, cols: Int, x: UnsafePointer<Float>, ldx: Int, w: UnsafeRawPointer, ldw: Int, k: Int,
        y: UnsafeMutablePointer<Float>, ldy: Int, bias: UnsafePointer<Float>?, accumulate: Bool
    ) {
        switch (rows, cols) {
        case (4, 2): tileBF16(4, 2, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (4, 1): tileBF16(4, 1, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (3, 2): tileBF16(3, 2, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (3, 1): tileBF16(3, 1, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (2, 2): tileBF16(2, 2, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (2, 1): tileBF16(2, 1, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        case (1, 2): tileBF16(1, 2, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        default: tileBF16(1, 1, x, ldx, w, ldw, k, y, ldy, bias, accumulate)
        }
    }

    /// The bf16 micro-kernel, `rows` (≤ 4) rows of x against `cols` (≤ 2) bf16 rows of W: per 16
    /// columns, one 32-byte load per W row splits into its even and odd weights
    /// (`evenHalves`/`oddHalves`), each multiplied with the matching half of x's block.
    @inline(always)
    static func tileBF16(
        _ rows: Int, _ cols: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ w: UnsafeRawPointer, _ ldw: Int,
        _ k: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ bias: UnsafePointer<Float>?, _ accumulate: Bool
    ) {
        let (x0, x1, x2, x3) = rowPointers(x, ldx, rows)
        let w0 = w
        let w1 = w + (cols > 1 ? ldw : 0)
        var c00 = SIMD8<Float>(), c01 = SIMD8<Float>()
        var c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
        var c20 = SIMD8<Float>(), c21 = SIMD8<Float>()
        var c30 = SIMD8<Float>(), c31 = SIMD8<Float>()
        var i = 0
        while i &+ 16 <= k {
            let u0 = w0.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<UInt32>.self)
            let u1 = cols > 1 ? w1.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<UInt32>.self) : u0
            let e0 = evenHalves(u0), o0 = oddHalves(u0), e1 = evenHalves(u1), o1 = oddHalves(u1)
            var a = load(x0, i), b = load(x0, i &+ 8)
            c00.addProduct(a, e0)
            c00.addProduct(b, o0)
            if cols > 1 { c01.addProduct(a, e1); c01.addProduct(b, o1) }
            if rows > 1 {
                a = load(x1, i)
                b = load(x1, i &+ 8)
                c10.addProduct(a, e0)
                c10.addProduct(b, o0)
                if cols > 1 { c11.addProduct(a, e1); c11.addProduct(b, o1) }
            }
            if rows > 2 {
                a = load(x2, i)
                b = load(x2, i &+ 8)
                c20.addProduct(a, e0)
                c20.addProduct(b, o0)
                if cols > 1 { c21.addProduct(a, e1); c21.addProduct(b, o1) }
            }
            if rows > 3 {
                a = load(x3, i)
                b = load(x3, i &+ 8)
                c30.addProduct(a, e0)
                c30.addProduct(b, o0)
                if cols > 1 { c31.addProduct(a, e1); c31.addProduct(b, o1) }
            }
            i &+= 16
        }
        var s0 = horizontalSums(c00, c10, c20, c30)
        var s1 = horizontalSums(c01, c11, c21, c31)
        // The tail (k mod 16) is in natural order in x and W.
        while i < k {
            let xv = SIMD4(x0[i], x1[i], x2[i], x3[i])
            s0.addProduct(xv, SIMD4(repeating: bf16(w0, i)))
            if cols > 1 { s1.addProduct(xv, SIMD4(repeating: bf16(w1, i))) }
            i &+= 1
        }
        storeTile(rows, cols, s0, s1, s1, y, ldy, bias, accumulate)
    }
}

// File-local helpers: debug builds compile files separately, and a helper in another file would
// be a call in the inner loop.

/// Rows 0–3 of a micro-tile of x; missing rows alias row 0 so that loads stay in bounds (their
/// results are discarded).
@inline(always) private func rowPointers(_ x: UnsafePointer<Float>, _ ldx: Int, _ rows: Int)
    -> (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>) {
    (x, x + (rows > 1 ? ldx : 0), x + (rows > 2 ? 2 &* ldx : 0), x + (rows > 3 ? 3 &* ldx : 0))
}

/// Writes a micro-tile's sums (lane r of `s_j`: row r, column j; `cols` ≤ 3) into y, adding to it or
/// adding the bias.
@inline(always) private func storeTile(
    _ rows: Int, _ cols: Int, _ s0: SIMD4<Float>, _ s1: SIMD4<Float>, _ s2: SIMD4<Float>,
    _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ bias: UnsafePointer<Float>?, _ accumulate: Bool
) {
    for r in 0..<rows {
        let out = y + r &* ldy
        if accumulate {
            out[0] += s0[r]
            if cols > 1 { out[1] += s1[r] }
            if cols > 2 { out[2] += s2[r] }
        } else {
            out[0] = s0[r] + (bias?[0] ?? 0)
            if cols > 1 { out[1] = s1[r] + (bias?[1] ?? 0) }
            if cols > 2 { out[2] = s2[r] + (bias?[2] ?? 0) }
        }
    }
}

@inline(always) private func load(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
}

/// The bf16 in the low half of each 32-bit lane, as floats.
@inline(always) private func evenHalves(_ u: SIMD8<UInt32>) -> SIMD8<Float> {
    unsafeBitCast(u &<< 16, to: SIMD8<Float>.self)
}

/// The bf16 in the high half of each 32-bit lane, as floats.
@inline(always) private func oddHalves(_ u: SIMD8<UInt32>) -> SIMD8<Float> {
    unsafeBitCast(u & 0xFFFF_0000, to: SIMD8<Float>.self)
}

@inline(always) private func bf16(_ p: UnsafeRawPointer, _ i: Int) -> Float {
    Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)) << 16)
}

@inline(always) private func floats(_ p: UnsafeRawPointer) -> UnsafePointer<Float> {
    p.assumingMemoryBound(to: Float.self)
}

/// `(a0.sum(), a1.sum(), a2.sum(), a3.sum())` with a shuffle tree instead of four serial sums.
@inline(always)
private func horizontalSums(_ a0: SIMD8<Float>, _ a1: SIMD8<Float>, _ a2: SIMD8<Float>, _ a3: SIMD8<Float>) -> SIMD4<Float> {
    let u0 = SIMD8(lowHalf: a0.lowHalf + a0.highHalf, highHalf: a1.lowHalf + a1.highHalf)
    let u1 = SIMD8(lowHalf: a2.lowHalf + a2.highHalf, highHalf: a3.lowHalf + a3.highHalf)
    let v = SIMD8(lowHalf: u0.evenHalf, highHalf: u1.evenHalf) + SIMD8(lowHalf: u0.oddHalf, highHalf: u1.oddHalf)
    return v.evenHalf + v.oddHalf
}

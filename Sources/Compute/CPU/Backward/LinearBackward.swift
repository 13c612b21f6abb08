/// The backward of `y = x·Wᵀ + b`, as products the forward's tiled kernel already computes well:
///
/// - `dx = dy·W` is `linear(dy, weight: Wᵀ)`: W is transposed (and widened to f32) once per call;
/// - `dW += dyᵀ·x` is `linear(dyᵀ, weight: xᵀ, accumulate: true)`: both operands transposed so that
///   the reduction over tokens runs along contiguous rows.
///
/// A transpose moves each element once; the product touches it K times, so at training sizes the
/// copies cost a few percent of the GEMM and keep one well-tuned micro-kernel for all three products.
extension CPUKernels {
    /// Elements per transpose tile side: 32 × 32 floats (4 KiB) read and written stay in L1.
    static let transposeTile = 32

    /// `destination[c, r] = source[r, c]` for a `rows × columns` matrix of f32, bf16 or f16 with rows
    /// `sourceRowStride` elements apart, into a contiguous f32 `columns × rows` matrix.
    ///
    /// Tiles of 32 × 32 (4 KiB read and written, L1-resident); f32 tiles go through 8 × 8 register
    /// transposes, other dtypes (and edges) element by element after widening.
    public static func transpose(
        _ source: UnsafeRawPointer, _ dtype: DType, rows: Int, columns: Int, sourceRowStride: Int,
        into destination: UnsafeMutablePointer<Float>
    ) {
        let tile = transposeTile
        let rowTiles = (rows + tile - 1) / tile, columnTiles = (columns + tile - 1) / tile
        let elementSize = dtype.byteSize
        let isF32 = dtype == .f32
        // Work in bands of whole tile rows so that each task reads contiguous source rows.
        Parallel.forEachChunk(total: rowTiles, grain: max(1, (1 << 16) / max(1, tile * columns))) { bands in
            let row = UnsafeMutablePointer<Float>.allocate(capacity: tile)
            defer { row.deallocate() }
            for band in bands {
                let r0 = band * tile, r1 = min(rows, r0 + tile)
                for ct in 0..<columnTiles {
                    let c0 = ct * tile, c1 = min(columns, c0 + tile)
                    var r = r0
                    if isF32 {
                        let f = source.assumingMemoryBound(to: Float.self)
                        while r + 8 <= r1 {
                            var c = c0
                            while c + 8 <= c1 {
                                transposeBlock(f + r * sourceRowStride + c, sourceRowStride, destination + c * rows + r, rows)
                                c += 8
                            }
                            while c < c1 {
                                for i in r..<r + 8 { destination[c * rows + i] = f[i * sourceRowStride + c] }
                                c += 1
                            }
                            r += 8
                        }
                    }
                    while r < r1 {
                        convertToFloat(source + (r * sourceRowStride + c0) * elementSize, dtype, count: c1 - c0, into: row)
                        var c = c0
                        while c < c1 {
                            destination[c * rows + r] = row[c - c0]
                            c += 1
                        }
                        r += 1
                    }
                }
            }
        }
    }

    /// `dx = dy·W` (or `dx += dy·W`). dy: [n, o] f32 rows `dyRowStride` apart; W: [o, k] of `weightType`
    /// with rows `weightRowStride` apart; dx: [n, k] f32 rows `dxRowStride` apart.
    public static func linearBackwardInput(
        dy: UnsafePointer<Float>, dyRowStride: Int, weight: UnsafeRawPointer, weightType: DType, weightRowStride: Int,
        dx: UnsafeMutablePointer<Float>, dxRowStride: Int, rows: Int, inFeatures k: Int, outFeatures o: Int, accumulate: Bool
    ) {
        if rows == 0 || k == 0 { return }
        let transposed = UnsafeMutablePointer<Float>.allocate(capacity: max(1, o * k))
        defer { transposed.deallocate() }
        transpose(weight, weightType, rows: o, columns: k, sourceRowStride: weightRowStride, into: transposed)
        linear(x: dy, xRowStride: dyRowStride, weight: UnsafeRawPointer(transposed), weightType: .f32, weightRowStride: o,
               bias: nil, y: dx, yRowStride: dxRowStride, rows: rows, inFeatures: o, outFeatures: k, accumulate: accumulate)
    }

    /// `dW += dyᵀ·x` and `db += Σ_n dy[n, :]` when `db` is given. dy: [n, o]; x: [n, k]; dW: [o, k]
    /// contiguous; all f32, rows of dy and x `dyRowStride`/`xRowStride` apart.
    public static func linearBackwardWeight(
        dy: UnsafePointer<Float>, dyRowStride: Int, x: UnsafePointer<Float>, xRowStride: Int,
        dW: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>?, rows n: Int, inFeatures k: Int, outFeatures o: Int
    ) {
        if n == 0 || o == 0 { return }
        if let db { columnSums(dy, rowStride: dyRowStride, rows: n, columns: o, into: db) }
        if k == 0 { return }
        let dyT = UnsafeMutablePointer<Float>.allocate(capacity: o * n)
        defer { dyT.deallocate() }
        let xT = UnsafeMutablePointer<Float>.allocate(capacity: k * n)
        defer { xT.deallocate() }
        transpose(UnsafeRawPointer(dy), .f32, rows: n, columns: o, sourceRowStride: dyRowStride, into: dyT)
        transpose(UnsafeRawPointer(x), .f32, rows: n, columns: k, sourceRowStride: xRowStride, into: xT)
        linear(x: dyT, xRowStride: n, weight: UnsafeRawPointer(xT), weightType: .f32, weightRowStride: n,
               bias: nil, y: dW, yRowStride: k, rows: o, inFeatures: n, outFeatures: k, accumulate: true)
    }

    /// `sums[c] += Σ_r m[r, c]`, rows in order (deterministic); columns split over threads.
    public static func columnSums(_ m: UnsafePointer<Float>, rowStride: Int, rows: Int, columns: Int, into sums: UnsafeMutablePointer<Float>) {
        let blocks = (columns + 7) / 8
        Parallel.forEachChunk(total: blocks, grain: max(1, elementwiseGrain / max(1, 8 * rows))) { range in
            let c0 = range.lowerBound * 8, c1 = min(columns, range.upperBound * 8)
            var c = c0
            while c + 8 <= c1 {
                var acc = SIMD8<Float>()
                for r in 0..<rows { acc += load(m + r * rowStride, c) }
                store(load(sums, c) + acc, sums, c)
                c += 8
            }
            while c < c1 {
                var acc: Float = 0
                for r in 0..<rows { acc += m[r * rowStride + c] }
                sums[c] += acc
                c += 1
            }
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

/// Transposes an 8 × 8 block of f32 (rows `ldSource` apart) into rows `ldDestination` apart: three
/// rounds of splitting even and odd elements move column bit j0, then j1, then j2 above the row bits,
/// which turns the row-major index 8i + j into 8j + i.
@inline(always) private func transposeBlock(
    _ s: UnsafePointer<Float>, _ ldSource: Int, _ d: UnsafeMutablePointer<Float>, _ ldDestination: Int
) {
    var v0 = load(s, 0), v1 = load(s + ldSource, 0), v2 = load(s + 2 * ldSource, 0), v3 = load(s + 3 * ldSource, 0)
    var v4 = load(s + 4 * ldSource, 0), v5 = load(s + 5 * ldSource, 0), v6 = load(s + 6 * ldSource, 0), v7 = load(s + 7 * ldSource, 0)
    for _ in 0..<3 {
        let w0 = SIMD8(lowHalf: v0.evenHalf, highHalf: v1.evenHalf), w1 = SIMD8(lowHalf: v2.evenHalf, highHalf: v3.evenHalf)
        let w2 = SIMD8(lowHalf: v4.evenHalf, highHalf: v5.evenHalf), w3 = SIMD8(lowHalf: v6.evenHalf, highHalf: v7.evenHalf)
        let w4 = SIMD8(lowHalf: v0.oddHalf, highHalf: v1.oddHalf), w5 = SIMD8(lowHalf: v2.oddHalf, highHalf: v3.oddHalf)
        let w6 = SIMD8(lowHalf: v4.oddHalf, highHalf: v5.oddHalf), w7 = SIMD8(lowHalf: v6.oddHalf, highHalf: v7.oddHalf)
        (v0, v1, v2, v3, v4, v5, v6, v7) = (w0, w1, w2, w3, w4, w5, w6, w7)
    }
    store(v0, d, 0)
    store(v1, d + ldDestination, 0)
    store(v2, d + 2 * ldDestination, 0)
    store(v3, d + 3 * ldDestination, 0)
    store(v4, d + 4 * ldDestination, 0)
    store(v5, d + 5 * ldDestination, 0)
    store(v6, d + 6 * ldDestination, 0)
    store(v7, d + 7 * ldDestination, 0)
}

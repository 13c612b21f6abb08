/// Elementwise ops: activations, SwiGLU, addition. Split into contiguous chunks over threads above
/// `elementwiseGrain` elements; each chunk is one vectorised loop of `VectorMath`.
extension CPUKernels {
    /// Elements per chunk below which an elementwise op stays on one thread (~10 µs of work).
    static let elementwiseGrain = 16_384

    /// `y = act(x)`; x and y may be the same memory.
    public static func activation(_ kind: Activation, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        forEachChunk(count) { start, n in VectorMath.apply(kind, x + start, y + start, n) }
    }

    /// `y = silu(gate) · up`; y may alias either input.
    public static func swiGLU(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        forEachChunk(count) { start, n in VectorMath.siluProduct(gate + start, up + start, y + start, n) }
    }

    /// `y = a + b`; y may alias either input.
    public static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        forEachChunk(count) { start, n in VectorMath.add(a + start, b + start, y + start, n) }
    }

    /// Calls `body(start, count)` on chunks that are multiples of 8 elements (except the last).
    static func forEachChunk(_ count: Int, _ body: (Int, Int) -> Void) {
        let blocks = (count + 7) / 8
        Parallel.forEachChunk(total: blocks, grain: elementwiseGrain / 8) { range in
            let start = range.lowerBound * 8
            body(start, min(count, range.upperBound * 8) - start)
        }
    }

    /// Calls `body` for every row, in parallel when there are enough elements.
    static func forEachRow(rows: Int, width: Int, _ body: (Int) -> Void) {
        let rowsPerChunk = max(1, elementwiseGrain / max(width, 1))
        Parallel.forEachChunk(total: rows, grain: rowsPerChunk) { range in
            for r in range { body(r) }
        }
    }
}

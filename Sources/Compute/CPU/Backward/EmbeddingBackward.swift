/// The backward of an embedding lookup: a scatter-add of gradient rows into the table's gradient.
extension CPUKernels {
    /// `dTable[ids[n], :] += dy[n, :]`. Ids repeat, so threads split the columns, not the rows: each
    /// thread adds every row's slice of its columns, in token order, and no two threads write the
    /// same element (the result does not depend on the thread count).
    public static func embeddingBackward(
        ids: UnsafeBufferPointer<Int32>, _ dy: UnsafePointer<Float>, vocabulary: Int, width: Int,
        into dTable: UnsafeMutablePointer<Float>
    ) {
        for id in ids {
            precondition(id >= 0 && Int(id) < vocabulary, "embedding backward: id \(id) outside the table of \(vocabulary) rows")
        }
        let blocks = (width + 7) / 8
        Parallel.forEachChunk(total: blocks, grain: max(1, elementwiseGrain / max(1, 8 * ids.count))) { range in
            let c0 = range.lowerBound * 8, c1 = min(width, range.upperBound * 8)
            for n in 0..<ids.count {
                let source = dy + n * width, target = dTable + Int(ids[n]) * width
                var c = c0
                while c + 8 <= c1 {
                    let sum = UnsafeRawPointer(target + c).loadUnaligned(as: SIMD8<Float>.self)
                        + UnsafeRawPointer(source + c).loadUnaligned(as: SIMD8<Float>.self)
                    UnsafeMutableRawPointer(target + c).storeBytes(of: sum, as: SIMD8<Float>.self)
                    c += 8
                }
                while c < c1 {
                    target[c] += source[c]
                    c += 1
                }
            }
        }
    }
}

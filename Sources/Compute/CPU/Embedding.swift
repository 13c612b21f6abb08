/// Embedding lookup: rows of a table (f32, bf16 or f16) gathered into f32 activations.
extension CPUKernels {
    /// `y[n, :] = table[ids[n], :]`, or `+=` when `accumulate` (OPT adds learned positions this way).
    /// An id outside `0..<vocabulary` is a bug in the caller (token ids are checked where requests
    /// come in) and stops the process.
    public static func embedding(
        ids: UnsafeBufferPointer<Int32>, table: UnsafeRawPointer, tableType: DType, vocabulary: Int, width: Int,
        into y: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        precondition(tableType.isFloatingPoint, "embedding table of \(tableType)")
        for id in ids {
            precondition(id >= 0 && Int(id) < vocabulary, "embedding id \(id) outside the table of \(vocabulary) rows")
        }
        let rowBytes = width * tableType.byteSize
        forEachRow(rows: ids.count, width: width) { n in
            let source = table + Int(ids[n]) * rowBytes
            if accumulate {
                accumulateAsFloat(source, tableType, count: width, into: y + n * width)
            } else {
                convertToFloat(source, tableType, count: width, into: y + n * width)
            }
        }
    }
}

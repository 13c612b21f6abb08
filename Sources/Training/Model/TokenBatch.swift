/// `batch` sequences of `sequence` token ids each, laid end to end (row-major [batch, sequence]).
/// Per-token arrays of the training API are indexed the same way, flat `b * sequence + t`, and entry
/// (b, t) concerns token t predicted from tokens 0..<t; entries with t == 0 are unused (always 0).
public struct TokenBatch: Sendable, Codable, Equatable {
    public var ids: [Int32]
    public var batch: Int
    public var sequence: Int

    public init(ids: [Int32], batch: Int, sequence: Int) {
        precondition(batch >= 0 && sequence >= 0 && ids.count == batch * sequence,
                     "TokenBatch of \(ids.count) ids is not \(batch) × \(sequence)")
        self.ids = ids
        self.batch = batch
        self.sequence = sequence
    }

    /// Number of tokens, `batch · sequence`.
    public var count: Int { ids.count }
}

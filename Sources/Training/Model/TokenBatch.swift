/// `batch` sequences of `sequence` token ids each, laid end to end (row-major [batch, sequence]).
/// Per-token arrays of the training API are indexed the same way, flat `b * sequence + t`, and entry
/// (b, t) concerns token t predicted from tokens 0..<t; entries with t == 0 are unused (always 0).
public struct TokenBatch: Sendable, Codable, Equatable {
    public var ids: [Int32]
    public var batch: Int
    public var sequence: Int
    public init(ids: [Int32], batch: Int, sequence: Int) {
        precondition(ids.count == batch * sequence)
        self.ids = ids
        self.batch = batch
        self.sequence = sequence
    }
}

/// The index arrays of one forward step: the token ids, where each goes in its sequence and the KV
/// cache (an ``AttentionLayout``), the rows whose logits are wanted, and the rotary frequencies.
///
/// A model makes them once per step with ``ComputeBackend/prepareStep(tokens:layout:logitRows:positionOffset:rotary:)``
/// and hands them to the ops that index (``ComputeBackend/embedTokens(_:table:into:)`` and the rest). On the
/// CPU the ops read the host arrays. On a GPU they were uploaded in one copy, so a step costs one
/// host-to-device transfer instead of one per op and layer, and a step replayed as a CUDA graph reads them
/// from a device buffer at a fixed address.
public struct StepIndices: @unchecked Sendable {
    public let tokens: [Int32]
    public let layout: AttentionLayout
    public let logitRows: [Int32]
    /// Added to each position to index a learned position table (OPT's offset of 2).
    public let positionOffset: Int32
    public let rotary: RotaryEmbedding?
    /// The backend's copy of the arrays (a device buffer on a GPU); nil where the ops read the host arrays.
    public let backendCopy: AnyObject?

    public init(tokens: [Int32], layout: AttentionLayout, logitRows: [Int32], positionOffset: Int32 = 0,
                rotary: RotaryEmbedding? = nil, backendCopy: AnyObject? = nil) {
        self.tokens = tokens
        self.layout = layout
        self.logitRows = logitRows
        self.positionOffset = positionOffset
        self.rotary = rotary
        self.backendCopy = backendCopy
    }

    /// The same arrays with the backend's copy `copy`.
    public func with(backendCopy copy: AnyObject?) -> StepIndices {
        StepIndices(tokens: tokens, layout: layout, logitRows: logitRows, positionOffset: positionOffset,
                    rotary: rotary, backendCopy: copy)
    }

    /// The arrays packed as one block of 32-bit words, in the order a GPU backend uploads them; the block
    /// tables take `tableWidth` words each (at least the longest table), so that steps with the same
    /// token count, sequence count and width have the same layout.
    ///
    /// `positions[N] · tableStart[N] · tables[S · W] · tokens[N] · shifted positions[N] · slots[N] ·
    /// logit rows[M] · rotary inverse frequencies[F]` (the frequencies as float bit patterns).
    public func packed(tableWidth: Int) -> PackedStepIndices {
        let n = tokens.count, s = layout.blockTables.count
        let frequencies = rotary?.inverseFrequencies ?? []
        var words: [Int32] = []
        words.reserveCapacity(5 * n + s * tableWidth + logitRows.count + frequencies.count)
        words += layout.positionOfToken
        for t in 0..<n { words.append(layout.sequenceOfToken[t] &* Int32(tableWidth)) }
        for table in layout.blockTables {
            words += table
            // Unused entries repeat the last block (never read: a position indexes within its table).
            words += repeatElement(table.last ?? 0, count: tableWidth - table.count)
        }
        words += tokens
        for p in layout.positionOfToken { words.append(p &+ positionOffset) }
        for t in 0..<n { words.append(Int32(truncatingIfNeeded: layout.slot(ofToken: t))) }
        words += logitRows
        for f in frequencies { words.append(Int32(bitPattern: f.bitPattern)) }
        return PackedStepIndices(words: words, tokens: n, sequences: s, tableWidth: tableWidth,
                                 logitRows: logitRows.count, frequencies: frequencies.count)
    }
}

/// ``StepIndices`` as one array of 32-bit words, and where each part starts in it.
public struct PackedStepIndices: Sendable {
    public let words: [Int32]
    public let tokens: Int
    public let sequences: Int
    public let tableWidth: Int
    public let logitRows: Int
    public let frequencies: Int

    /// Word offsets of the parts. `positions` is also the start of the attention metadata
    /// (positions, table starts, tables).
    public var positions: Int { 0 }
    public var tableStarts: Int { tokens }
    public var tables: Int { 2 * tokens }
    public var tokenIds: Int { 2 * tokens + sequences * tableWidth }
    public var shiftedPositions: Int { tokenIds + tokens }
    public var slots: Int { shiftedPositions + tokens }
    public var rows: Int { slots + tokens }
    public var inverseFrequencies: Int { rows + logitRows }

    /// Two packings with the same shape (a CUDA graph captured for one replays with the other).
    public func hasSameShape(as other: PackedStepIndices) -> Bool {
        (tokens, sequences, tableWidth, logitRows, frequencies)
            == (other.tokens, other.sequences, other.tableWidth, other.logitRows, other.frequencies)
    }
}

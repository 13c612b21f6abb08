import Compute
import Testing

@Suite struct StepIndicesTests {
    /// Two sequences, one decoding (position 5) and one prefilling 2 tokens, block size 4.
    static let step = StepIndices(
        tokens: [11, 12, 13], layout: AttentionLayout(blockSize: 4, blockTables: [[7, 2], [5]], sequenceOfToken: [0, 1, 1],
                                                       positionOfToken: [5, 0, 1]),
        logitRows: [0, 2], positionOffset: 2, rotary: RotaryEmbedding(inverseFrequencies: [1, 0.5]))

    @Test func packsEveryArrayAtItsOffset() {
        let p = Self.step.packed(tableWidth: 4)
        let expectedCount = 5 * 3 + 2 * 4 + 2 + 2
        #expect(p.words.count == expectedCount)
        #expect(Array(p.words[p.positions..<p.tableStarts]) == [5, 0, 1])
        // The attention kernel finds token t's table at tables + tableStart[t].
        #expect(Array(p.words[p.tableStarts..<p.tables]) == [0, 4, 4])
        #expect(Array(p.words[p.tables..<p.tokenIds]) == [7, 2, 2, 2, 5, 5, 5, 5])
        #expect(Array(p.words[p.tokenIds..<p.shiftedPositions]) == [11, 12, 13])
        #expect(Array(p.words[p.shiftedPositions..<p.slots]) == [7, 2, 3])
        // Slot = block · blockSize + position % blockSize: position 5 is in block 2 (the table's second).
        let slots: [Int32] = [9, 20, 21]
        #expect(Array(p.words[p.slots..<p.rows]) == slots)
        #expect(Array(p.words[p.rows..<p.inverseFrequencies]) == [0, 2])
        let frequencies: [Float] = p.words[p.inverseFrequencies...].map { Float(bitPattern: UInt32(bitPattern: $0)) }
        #expect(frequencies == [1, 0.5])
    }

    @Test func shapesDecideWhetherAGraphCanReplay() {
        let a = Self.step.packed(tableWidth: 4), b = Self.step.packed(tableWidth: 8)
        #expect(a.hasSameShape(as: a))
        #expect(!a.hasSameShape(as: b))
    }
}

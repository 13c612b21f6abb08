import Compute
import Foundation
import Testing

@Suite("CPU paged attention")
struct AttentionTests {
    let backend = CPUBackend()

    struct Sequence {
        var length: Int           // positions in the cache after this step
        var firstNew: Int         // positions before this are from earlier steps
        var blocks: [Int32]
    }

    // Block size 4, blocks out of order and interleaved between sequences.
    static let blockSize = 4
    static let sequences = [
        Sequence(length: 7, firstNew: 0, blocks: [5, 2]),       // prefill of 7 tokens
        Sequence(length: 10, firstNew: 9, blocks: [9, 0, 7]),   // decode at position 9
        Sequence(length: 1, firstNew: 0, blocks: [11]),         // a one-token prompt
        Sequence(length: 4, firstNew: 2, blocks: [3]),          // chunked prefill, second chunk
    ]

    @Test("grouped-query attention over several sequences and non-contiguous blocks",
          arguments: [(4, 2, 8), (6, 1, 12), (3, 3, 40), (8, 2, 64)])
    func pagedAttention(heads: Int, kvHeads: Int, headDim: Int) {
        var random = SplitMix64(seed: UInt64(heads * 100 + kvHeads * 10 + headDim))
        let slots = 12 * Self.blockSize
        let row = kvHeads * headDim
        // Never-written slots hold NaN, so reading one shows up in the output.
        let kCache = Tensor([Float](repeating: .nan, count: slots * row), shape: [slots, kvHeads, headDim])
        let vCache = Tensor([Float](repeating: .nan, count: slots * row), shape: [slots, kvHeads, headDim])
        let keys = Self.sequences.map { random.floats($0.length * row) }
        let values = Self.sequences.map { random.floats($0.length * row) }
        let tables = Self.sequences.map(\.blocks)

        // Earlier steps wrote the old positions; this step writes the new ones (tokens interleaved).
        func tokens(old: Bool) -> [(seq: Int, pos: Int)] {
            let order = [1, 0, 3, 2]
            return order.flatMap { s in
                let range = old ? 0..<Self.sequences[s].firstNew : Self.sequences[s].firstNew..<Self.sequences[s].length
                return range.map { (s, $0) }
            }
        }
        for old in [true, false] {
            let step = tokens(old: old)
            let layout = AttentionLayout(blockSize: Self.blockSize, blockTables: tables,
                                         sequenceOfToken: step.map { Int32($0.seq) }, positionOfToken: step.map { Int32($0.pos) })
            let k = tensor(step.flatMap { Array(keys[$0.seq][$0.pos * row ..< ($0.pos + 1) * row]) }, [step.count, kvHeads, headDim])
            let v = tensor(step.flatMap { Array(values[$0.seq][$0.pos * row ..< ($0.pos + 1) * row]) }, [step.count, kvHeads, headDim])
            backend.writeKV(k: k, v: v, kCache: kCache, vCache: vCache, layout: layout)
        }

        let step = tokens(old: false)
        let layout = AttentionLayout(blockSize: Self.blockSize, blockTables: tables,
                                     sequenceOfToken: step.map { Int32($0.seq) }, positionOfToken: step.map { Int32($0.pos) })
        let qValues = random.floats(step.count * heads * headDim, in: -3...3)
        let q = tensor(qValues, [step.count, heads, headDim])
        let out = try! backend.zeros([step.count, heads, headDim], dtype: .f32)
        let scale = 1 / Float(headDim).squareRoot()
        backend.attention(q: q, kCache: kCache, vCache: vCache, layout: layout, scale: scale, into: out)

        let reference = Self.reference(q: qValues, keys: keys, values: values, step: step, heads: heads, kvHeads: kvHeads,
                                       headDim: headDim, scale: scale)
        let error = zip(out.floats(), reference).map { abs(Double($0) - $1) }.max() ?? .infinity
        #expect(error < 1e-5, "heads \(heads) kv \(kvHeads) dim \(headDim): max error \(error) on values in [-1, 1]")
    }

    /// Softmax attention in double precision; `keys[s]`/`values[s]` are sequence s's rows by position.
    static func reference(
        q: [Float], keys: [[Float]], values: [[Float]], step: [(seq: Int, pos: Int)],
        heads: Int, kvHeads: Int, headDim: Int, scale: Float
    ) -> [Double] {
        let row = kvHeads * headDim
        var reference = [Double]()
        for (n, token) in step.enumerated() {
            for h in 0..<heads {
                let g = h / (heads / kvHeads)
                let qh = (0..<headDim).map { Double(q[(n * heads + h) * headDim + $0]) }
                let scores = (0...token.pos).map { p in
                    (0..<headDim).reduce(0.0) { $0 + qh[$1] * Double(keys[token.seq][p * row + g * headDim + $1]) } * Double(scale)
                }
                let m = scores.max()!
                let weights = scores.map { exp($0 - m) }
                let total = weights.reduce(0, +)
                for d in 0..<headDim {
                    var s = 0.0
                    for p in 0...token.pos { s += weights[p] * Double(values[token.seq][p * row + g * headDim + d]) }
                    reference.append(s / total)
                }
            }
        }
        return reference
    }

    @Test("one decode token with a long context: its heads are split between threads",
          arguments: [(8, 4, 64), (12, 12, 64), (6, 2, 20)])
    func longContextDecode(heads: Int, kvHeads: Int, headDim: Int) {
        var random = SplitMix64(seed: UInt64(heads + kvHeads + headDim))
        let position = 301, blockSize = 16, row = kvHeads * headDim
        let blocks: [Int32] = (0..<19).map { Int32((7 * $0 + 3) % 19) }  // a permutation of 0..<19
        let slots = 19 * blockSize
        let kCache = Tensor([Float](repeating: .nan, count: slots * row), shape: [slots, kvHeads, headDim])
        let vCache = Tensor([Float](repeating: .nan, count: slots * row), shape: [slots, kvHeads, headDim])
        let keys = random.floats((position + 1) * row), values = random.floats((position + 1) * row)
        // The whole history in one write, as a prefill would.
        let history = AttentionLayout(blockSize: blockSize, blockTables: [blocks],
                                      sequenceOfToken: [Int32](repeating: 0, count: position + 1),
                                      positionOfToken: (0...position).map { Int32($0) })
        backend.writeKV(k: tensor(keys, [position + 1, kvHeads, headDim]), v: tensor(values, [position + 1, kvHeads, headDim]),
                        kCache: kCache, vCache: vCache, layout: history)
        let layout = AttentionLayout(blockSize: blockSize, blockTables: [blocks], sequenceOfToken: [0], positionOfToken: [Int32(position)])
        let qValues = random.floats(heads * headDim, in: -3...3)
        let out = try! backend.zeros([1, heads, headDim], dtype: .f32)
        let scale = 1 / Float(headDim).squareRoot()
        backend.attention(q: tensor(qValues, [1, heads, headDim]), kCache: kCache, vCache: vCache, layout: layout, scale: scale, into: out)
        let reference = Self.reference(q: qValues, keys: [keys], values: [values], step: [(0, position)], heads: heads,
                                       kvHeads: kvHeads, headDim: headDim, scale: scale)
        let error = zip(out.floats(), reference).map { abs(Double($0) - $1) }.max() ?? .infinity
        #expect(error < 1e-5, "heads \(heads) kv \(kvHeads) dim \(headDim): max error \(error)")
    }

    @Test("writeKV puts each token's row at its slot and nowhere else")
    func writeKVSlots() {
        let kCache = try! backend.zeros([16, 2, 3], dtype: .f32)
        let vCache = try! backend.zeros([16, 2, 3], dtype: .f32)
        let layout = AttentionLayout(blockSize: 4, blockTables: [[2, 0], [3]], sequenceOfToken: [0, 1, 0], positionOfToken: [5, 2, 1])
        let k = Tensor((0..<18).map { Float($0 + 1) }, shape: [3, 2, 3])
        let v = Tensor((0..<18).map { Float(-$0 - 1) }, shape: [3, 2, 3])
        backend.writeKV(k: k, v: v, kCache: kCache, vCache: vCache, layout: layout)
        let slots = [0 * 4 + 1, 3 * 4 + 2, 2 * 4 + 1]  // table[pos / 4] * 4 + pos % 4
        var expected = [Float](repeating: 0, count: 96)
        for (n, slot) in slots.enumerated() {
            for i in 0..<6 { expected[slot * 6 + i] = Float(n * 6 + i + 1) }
        }
        #expect(kCache.floats() == expected)
        #expect(vCache.floats() == expected.map { -$0 })
    }
}

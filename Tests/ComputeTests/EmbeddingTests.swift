import Compute
import Testing

@Suite("CPU embedding")
struct EmbeddingTests {
    let backend = CPUBackend()

    @Test("gathers rows of any float table, replacing or accumulating", arguments: [DType.f32, .bf16, .f16])
    func gather(dtype: DType) {
        var random = SplitMix64(seed: 11)
        let vocabulary = 50, width = 19
        let table = tensor(random.floats(vocabulary * width), [vocabulary, width], dtype)
        let rows = table.floats()
        let ids: [Int32] = [3, 0, 49, 3, 17]
        let y = tensor(random.floats(ids.count * width), [ids.count, width])
        let before = y.floats()

        backend.embedding(ids: ids, table: table, into: y, accumulate: true)
        var expected = [Float]()
        for (n, id) in ids.enumerated() {
            for i in 0..<width { expected.append(before[n * width + i] + rows[Int(id) * width + i]) }
        }
        #expect(y.floats() == expected)

        backend.embedding(ids: ids, table: table, into: y, accumulate: false)
        #expect(y.floats() == ids.flatMap { Array(rows[Int($0) * width ..< (Int($0) + 1) * width]) })
    }
}

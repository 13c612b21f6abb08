import Compute
import Foundation
import Models
import Testing

/// The definition of correct: logits and greedy generations equal to Hugging Face transformers'.
@Suite struct ModelParityTests {
    static let models = ["opt-tiny", "llama-tiny", "qwen2-tiny"]

    func golden(_ model: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: Fixtures.path("\(model)/golden.safetensors"))
    }

    func rows(_ t: Tensor) -> [[Int32]] {
        let flat = t.integers().map { Int32($0) }
        let width = t.shape[1]
        return (0..<t.shape[0]).map { Array(flat[$0 * width..<($0 + 1) * width]) }
    }

    @Test(arguments: models)
    func logitsMatchTransformers(model: String) throws {
        let local = try LocalModel(directory: Fixtures.path(model), backend: CPUBackend())
        let g = try golden(model)
        let logits = try local.logits(inputIds: rows(try g.tensor("input_ids")))
        let expected = try g.tensor("logits")
        #expect(logits.shape == expected.shape)
        let maxDiff = zip(logits.floats(), expected.floats()).map { abs($0 - $1) }.max() ?? .infinity
        #expect(maxDiff <= 1e-4, "max |Δ| = \(maxDiff)")
    }

    @Test(arguments: models)
    func greedyGenerationMatchesTransformers(model: String) throws {
        let local = try LocalModel(directory: Fixtures.path(model), backend: CPUBackend())
        let g = try golden(model)
        let prompt = rows(try g.tensor("generate_prompt"))[0]
        let expected = rows(try g.tensor("generate_greedy"))[0]
        let out = try local.generate(prompts: [prompt], params: SamplingParams(maxTokens: expected.count, temperature: 0))
        #expect(out[0][0].tokenIds == expected)
    }

    /// Decoding token by token through the KV cache gives the logits of a full forward pass, and a
    /// sequence batched with another of a different length gives the same logits as alone.
    @Test(arguments: models)
    func cacheAndRaggedBatchesAgreeWithFullForward(model: String) throws {
        let local = try LocalModel(directory: Fixtures.path(model), backend: CPUBackend())
        let ids = rows(try golden(model).tensor("input_ids"))
        let full = try local.logits(inputIds: [ids[0]]).floats()
        let v = local.config.vocabSize, t = ids[0].count
        let m = local.model
        let cache = try m.makeCache(blockSize: 4, numBlocks: 32)
        // Sequence 0 uses scattered blocks; sequence 1 (a prefix of row 1) rides along in the same steps.
        let table0: [Int32] = [9, 3, 17, 5, 22, 1], table1: [Int32] = [0, 2, 4, 6, 8, 10]
        let prefill = 10
        var layout = AttentionLayout(blockSize: 4, blockTables: [table0, table1],
                                     sequenceOfToken: [Int32](repeating: 0, count: prefill) + [Int32](repeating: 1, count: 3),
                                     positionOfToken: (0..<prefill).map { Int32($0) } + [0, 1, 2])
        var logits = try m.forward(tokens: Array(ids[0][0..<prefill]) + Array(ids[1][0..<3]), layout: layout, cache: cache,
                                   logitRows: [prefill - 1])
        var worst: Float = 0
        func compare(_ got: Tensor, position: Int) {
            let g = got.floats()
            for i in 0..<v { worst = max(worst, abs(g[i] - full[position * v + i])) }
        }
        compare(logits, position: prefill - 1)
        for p in prefill..<t {
            layout = AttentionLayout(blockSize: 4, blockTables: [table0, table1], sequenceOfToken: [0, 1],
                                     positionOfToken: [Int32(p), Int32(p - prefill + 3)])
            logits = try m.forward(tokens: [ids[0][p], ids[1][p - prefill + 3]], layout: layout, cache: cache, logitRows: [0])
            compare(logits, position: p)
        }
        #expect(worst <= 1e-4, "max |Δ| = \(worst)")
    }

    @Test(arguments: models)
    func bf16WeightsStayClose(model: String) throws {
        let f32 = try LocalModel(directory: Fixtures.path(model), backend: CPUBackend())
        let bf16 = try LocalModel(directory: Fixtures.path(model), dtype: .bf16, backend: CPUBackend())
        let ids = rows(try golden(model).tensor("input_ids"))
        let a = try f32.logits(inputIds: ids).floats(), b = try bf16.logits(inputIds: ids).floats()
        let maxDiff = zip(a, b).map { abs($0 - $1) }.max()!
        let scale = a.map { abs($0) }.max()!
        // bf16 keeps 8 bits of mantissa: logits move by a few hundredths of their range, not more.
        #expect(maxDiff <= 0.05 * max(scale, 1), "max |Δ| = \(maxDiff), logit scale \(scale)")
        #expect(maxDiff > 0, "bf16 weights must actually be rounded")
    }
}

import Compute
import Foundation
import Models
import Testing

@Suite struct GenerationTests {
    func model() throws -> LocalModel { try LocalModel(directory: Fixtures.path("llama-tiny"), backend: CPUBackend()) }

    @Test func seededSamplingIsReproducibleAndSeedsMatter() throws {
        let m = try model()
        let params = SamplingParams(maxTokens: 12, temperature: 1.0, seed: 7, n: 3)
        let a = try m.generate(prompts: [[1, 5, 9]], params: params)
        let b = try m.generate(prompts: [[1, 5, 9]], params: params)
        #expect(a == b)
        #expect(Set(a[0].map(\.tokenIds)).count > 1, "n samples of a random model should differ")
        var other = params
        other.seed = 8
        #expect(try m.generate(prompts: [[1, 5, 9]], params: other) != a)
    }

    @Test func topKOfOneIsGreedy() throws {
        let m = try model()
        let greedy = try m.generate(prompts: [[1, 5, 9]], params: SamplingParams(maxTokens: 8, temperature: 0))
        let k1 = try m.generate(prompts: [[1, 5, 9]], params: SamplingParams(maxTokens: 8, temperature: 1.3, topK: 1, seed: 3))
        #expect(greedy[0][0].tokenIds == k1[0][0].tokenIds)
        let p0 = try m.generate(prompts: [[1, 5, 9]], params: SamplingParams(maxTokens: 8, temperature: 1.3, topP: 1e-6, seed: 3))
        #expect(greedy[0][0].tokenIds == p0[0][0].tokenIds)
    }

    @Test func logprobsAreRawLogSoftmax() throws {
        let m = try model()
        let prompt: [Int32] = [1, 5, 9]
        let out = try m.generate(prompts: [prompt], params: SamplingParams(maxTokens: 1, temperature: 0.7, seed: 1))[0][0]
        let logits = try m.logits(inputIds: [prompt]).floats()
        let v = m.config.vocabSize
        let last = Array(logits[(prompt.count - 1) * v..<prompt.count * v])
        let mx = last.max()!
        let lse = log(last.reduce(0.0) { $0 + exp(Double($1 - mx)) }) + Double(mx)
        let expected = Double(last[Int(out.tokenIds[0])]) - lse
        #expect(abs(Double(out.logprobs[0]) - expected) < 1e-4)
    }

    /// The fixture model with `eos_token_id` set to `eos`: its weights, a config that differs in that.
    func model(eos: Int32) throws -> LocalModel {
        let source = URL(fileURLWithPath: try Fixtures.path("llama-tiny"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("colocate-eos-\(getpid())-\(eos)")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let original = try Data(contentsOf: source.appendingPathComponent("config.json"))
        var config = try #require(try JSONSerialization.jsonObject(with: original) as? [String: Any])
        config["eos_token_id"] = Int(eos)
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: source.appendingPathComponent("model.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
        return try LocalModel(directory: dir.path, backend: CPUBackend())
    }

    @Test func stopsAtEOSUnlessIgnored() throws {
        let greedy = try model().generate(prompts: [[1, 5, 9]], params: SamplingParams(maxTokens: 6, temperature: 0, ignoreEOS: true))[0][0]
        #expect(greedy.finishReason == .length && greedy.tokenIds.count == 6)
        // Make the third greedy token the model's EOS: generation stops there (EOS included, as vLLM
        // returns it)…
        let eos = greedy.tokenIds[2]
        let first = greedy.tokenIds.firstIndex(of: eos)!
        let m = try model(eos: eos)
        #expect(m.model.config.eosTokenIds == [Int(eos)])
        let stopped = try m.generate(prompts: [[1, 5, 9]], params: SamplingParams(maxTokens: 6, temperature: 0))[0][0]
        #expect(stopped.finishReason == .stop)
        #expect(stopped.tokenIds == Array(greedy.tokenIds[...first]))
        // …unless EOS is ignored: then it runs to max tokens, through the EOS, with the same tokens.
        let ignoring = try m.generate(prompts: [[1, 5, 9]], params: SamplingParams(maxTokens: 6, temperature: 0, ignoreEOS: true))[0][0]
        #expect(ignoring.finishReason == .length)
        #expect(ignoring.tokenIds == greedy.tokenIds)
    }

    @Test func stopTokenIdsStopGeneration() throws {
        let m = try model()
        let greedy = try m.generate(prompts: [[1, 5, 9]], params: SamplingParams(maxTokens: 6, temperature: 0, ignoreEOS: true))[0][0]
        let stop = greedy.tokenIds[2]
        let stopped = try m.generate(prompts: [[1, 5, 9]], params: SamplingParams(maxTokens: 6, temperature: 0, stopTokenIds: [stop]))[0][0]
        #expect(stopped.finishReason == .stop)
        #expect(stopped.tokenIds == Array(greedy.tokenIds[...greedy.tokenIds.firstIndex(of: stop)!]))
    }

    @Test func badRequestsAreErrors() throws {
        let m = try model()
        #expect(throws: ModelError.self) { try m.generate(prompts: [[1, 99999]], params: .greedy) }
        #expect(throws: ModelError.self) { try m.generate(prompts: [[Int32](repeating: 1, count: 200)], params: .greedy) }
        #expect(throws: ModelError.self) { try m.generate(prompts: [[1]], params: SamplingParams(maxTokens: 0)) }
        #expect(throws: ModelError.self) { try m.generate(prompts: [[1]], params: SamplingParams(topP: 0)) }
    }

    /// A cache far smaller than the work forces preemption and recomputation; results are unchanged.
    @Test func maxTokensPerPromptLimitsEachPrompt() throws {
        let m = try model()
        let prompts: [[Int32]] = [[1, 5, 9, 4], [1, 7], [1, 3, 3]]
        let params = SamplingParams(maxTokens: 30, temperature: 0, ignoreEOS: true)
        let generator = Generator(model: m.model, cache: try m.model.makeCache(blockSize: 4, numBlocks: 64), maxSequences: 2)
        let limited = try generator.generate(prompts: prompts, params: params, maxTokensPerPrompt: [3, 17, 1])
        #expect(limited.map { $0[0].tokenIds.count } == [3, 17, 1])
        #expect(limited.allSatisfy { $0[0].finishReason == .length })
        // Each prefix equals the same prompt's unlimited greedy completion (admitted as others finish).
        let full = try m.generate(prompts: prompts, params: params)
        for (a, b) in zip(limited, full) { #expect(Array(b[0].tokenIds.prefix(a[0].tokenIds.count)) == a[0].tokenIds) }
        #expect(throws: ModelError.self) { try generator.generate(prompts: prompts, params: params, maxTokensPerPrompt: [3]) }
        #expect(throws: ModelError.self) { try generator.generate(prompts: prompts, params: params, maxTokensPerPrompt: [3, 0, 1]) }
    }

    @Test func preemptionDoesNotChangeGreedyResults() throws {
        let m = try model()
        let prompts: [[Int32]] = [[1, 5, 9, 4], [1, 7], [1, 3, 3, 3, 8, 2, 6], [1, 11]]
        let params = SamplingParams(maxTokens: 20, temperature: 0, ignoreEOS: true)
        let roomy = try m.generate(prompts: prompts, params: params)
        let cache = try m.model.makeCache(blockSize: 4, numBlocks: 9)
        let tight = try Generator(model: m.model, cache: cache).generate(prompts: prompts, params: params)
        let oneAtATime = try Generator(model: m.model, cache: try m.model.makeCache(blockSize: 4, numBlocks: 64), maxSequences: 1)
            .generate(prompts: prompts, params: params)
        #expect(oneAtATime.map { $0.map(\.tokenIds) } == roomy.map { $0.map(\.tokenIds) })
        // Same tokens; log-probs may differ in the last bits (rows are summed in other batch shapes).
        #expect(roomy.map { $0.map(\.tokenIds) } == tight.map { $0.map(\.tokenIds) })
        for (a, b) in zip(roomy.flatMap { $0 }, tight.flatMap { $0 }) {
            #expect(zip(a.logprobs, b.logprobs).allSatisfy { abs($0 - $1) < 1e-4 })
        }
    }

    @Test func initModelWritesALoadableModelWithTokenizer() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        for preset in ["opt-tiny", "llama-tiny", "qwen2-tiny"] {
            let out = dir.path + "/" + preset
            try ModelDirectory.write(preset: ModelPreset.named(preset), to: out, seed: 1)
            let m = try LocalModel(directory: out, backend: CPUBackend())
            let tok = try #require(m.tokenizer)
            #expect(tok.vocabSize == m.config.vocabSize)
            let ids = tok.encode("Hello, my name is")
            #expect(try tok.decode(ids) == "Hello, my name is")
            let gen = try m.generate(prompts: [ids], params: SamplingParams(maxTokens: 4, temperature: 0, ignoreEOS: true))
            #expect(gen[0][0].tokenIds.count == 4)
            _ = try tok.decode(gen[0][0].tokenIds)
        }
    }
}

/// The padded decode steps a generator hands to a step recorder, checked on the CPU: a recorder that runs
/// every step (no graph) and asserts what a CUDA graph needs — the same packed shape for every step of a
/// shape, a bucket of rows, padding rows at position 0 of the reserved last block.
@Suite struct RecordedDecodeStepTests {
    final class CheckingRecorder: StepGraphs {
        var shapes: [PackedStepIndices] = []
        var steps = 0
        var problems: [String] = []
        let paddingBlock: Int32

        init(paddingBlock: Int32) { self.paddingBlock = paddingBlock }

        var recordedShapes: Int { shapes.count }

        func run(_ step: StepIndices, _ forward: (StepIndices) throws -> Tensor) throws -> Tensor {
            steps += 1
            let packed = step.packed(tableWidth: 16)
            if !shapes.contains(where: { $0.hasSameShape(as: packed) }) { shapes.append(packed) }
            let rows = step.tokens.count
            if ![1, 2, 4, 8, 16, 24, 32].contains(rows) { problems.append("\(rows) rows is not a bucket") }
            for (t, table) in zip(step.layout.sequenceOfToken, step.layout.sequenceOfToken.map { step.layout.blockTables[Int($0)] }) {
                if table.contains(paddingBlock) && (table != [paddingBlock] || step.layout.positionOfToken[Int(t)] != 0) {
                    problems.append("a real sequence uses the padding block, or a padding row is not at position 0")
                }
            }
            return try forward(step)
        }
    }

    @Test func paddedDecodeStepsGiveTheTokensOfUnpaddedOnes() throws {
        let m = try LocalModel(directory: Fixtures.path("llama-tiny"), backend: CPUBackend())
        let prompts: [[Int32]] = [[1, 5, 9, 4], [1, 7], [1, 3, 3, 3, 8, 2, 6], [1, 11], [1, 2, 3]]
        let params = SamplingParams(maxTokens: 12, temperature: 0, ignoreEOS: true)
        let plain = try Generator(model: m.model, cache: try m.model.makeCache(blockSize: 4, numBlocks: 40))
            .generate(prompts: prompts, params: params, maxTokensPerPrompt: [12, 3, 9, 1, 7])
        let cache = try m.model.makeCache(blockSize: 4, numBlocks: 41)
        let recorder = CheckingRecorder(paddingBlock: Int32(cache.numBlocks - 1))
        let padded = try Generator(model: m.model, cache: cache, recorder: recorder)
            .generate(prompts: prompts, params: params, maxTokensPerPrompt: [12, 3, 9, 1, 7])
        #expect(padded.map { $0.map(\.tokenIds) } == plain.map { $0.map(\.tokenIds) })
        #expect(recorder.problems.isEmpty, "\(recorder.problems.prefix(3))")
        // The first step is the prefill (eager); then 4 sequences decode (one stopped at 1 token), 3 of them
        // padded to 4, then 2, then 1.
        #expect(Set(recorder.shapes.map(\.tokens)) == [4, 2, 1])
        #expect(recorder.steps > 4)
    }
}

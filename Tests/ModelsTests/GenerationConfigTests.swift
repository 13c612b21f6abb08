import Compute
import Foundation
import Models
import Testing

/// `generation_config.json`: several EOS ids, and sampling defaults applied as vLLM's
/// `generation_config="auto"` does.
@Suite struct GenerationConfigTests {
    static func parse(_ text: String) throws -> GenerationConfig { try GenerationConfig(json: Array(text.utf8)) }

    @Test func eosIsAnIntegerOrAList() throws {
        #expect(try Self.parse(#"{"eos_token_id": 2}"#).eosTokenIds == [2])
        #expect(try Self.parse(#"{"eos_token_id": [151645, 151643]}"#).eosTokenIds == [151645, 151643])
        #expect(try Self.parse(#"{"eos_token_id": null}"#).eosTokenIds == [])
        #expect(throws: ModelConfigError.self) { try Self.parse(#"{"eos_token_id": [1, "x"]}"#) }
    }

    @Test func qwenStyleDefaultsBecomeSamplingDefaults() throws {
        let g = try Self.parse(#"{"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643], "pad_token_id": 151643, "repetition_penalty": 1.05, "temperature": 0.7, "top_p": 0.8, "top_k": 20}"#)
        let p = g.samplingDefaults()
        #expect(p.temperature == 0.7 && p.topP == 0.8 && p.topK == 20)
        #expect(p.maxTokens == SamplingParams().maxTokens)
    }

    @Test func onlyValuesThatDifferFromTransformersDefaultsApply() throws {
        // vLLM reads `to_diff_dict()`: top_k 50 and temperature 1.0 are transformers' defaults, so
        // they are not applied and vLLM's own (top_k off) stay.
        let p = try Self.parse(#"{"top_k": 50, "temperature": 1.0, "max_new_tokens": 7}"#).samplingDefaults()
        #expect(p.topK == -1 && p.temperature == 1 && p.maxTokens == 7)
    }

    @Test func invalidValuesAreRefused() {
        #expect(throws: ModelConfigError.self) { try Self.parse(#"{"top_p": 0}"#) }
        #expect(throws: ModelConfigError.self) { try Self.parse(#"{"temperature": -1}"#) }
        #expect(throws: ModelConfigError.self) { try Self.parse(#"{"temperature": "hot"}"#) }
        #expect(throws: ModelConfigError.self) { try Self.parse("[]") }
    }

    /// A copy of llama-tiny whose generation_config.json lists `eos` as end-of-sequence ids.
    func model(eos: [Int32], in dir: TemporaryDirectory) throws -> LocalModel {
        let source = try Fixtures.path("llama-tiny")
        try FileManager.default.copyItem(atPath: source + "/config.json", toPath: dir.file("config.json"))
        try FileManager.default.createSymbolicLink(atPath: dir.file("model.safetensors"), withDestinationPath: source + "/model.safetensors")
        try Data(#"{"eos_token_id": [\#(eos.map(String.init).joined(separator: ", "))], "temperature": 0.5}"#.utf8)
            .write(to: URL(fileURLWithPath: dir.file("generation_config.json")))
        return try LocalModel(directory: dir.path, backend: CPUBackend())
    }

    @Test func everyListedEOSIdEndsACompletion() throws {
        let g = try SafeTensorsFile(path: Fixtures.path("llama-tiny/golden.safetensors"))
        let prompt = try g.tensor("generate_prompt").integers().map { Int32($0) }
        let greedy = try g.tensor("generate_greedy").integers().map { Int32($0) }
        // The first token of the greedy continuation that has not appeared before it.
        let cut = try #require((1..<greedy.count).first { !greedy[..<$0].contains(greedy[$0]) })
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let local = try model(eos: [2, greedy[cut]], in: dir)
        #expect(local.config.allEOSTokenIds.contains(Int(greedy[cut])))
        #expect(local.defaultSamplingParams.temperature == 0.5)

        let out = try local.generate(prompts: [prompt], params: SamplingParams(maxTokens: greedy.count, temperature: 0))[0][0]
        #expect(out.tokenIds == Array(greedy[...cut]))
        #expect(out.finishReason == .stop)
        // ignore_eos ignores them all, as vLLM.
        let all = try local.generate(prompts: [prompt], params: SamplingParams(maxTokens: greedy.count, temperature: 0, ignoreEOS: true))[0][0]
        #expect(all.tokenIds == greedy)
    }

    @Test func eosOutsideTheVocabularyIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect {
            _ = try model(eos: [99999], in: dir)
        } throws: { error in
            "\(error)".contains("eos_token_id 99999 is outside the vocabulary")
        }
    }
}

import Compute
import Foundation
import Testing

import Models

@Suite struct ConfigTests {
    @Test func optFixture() throws {
        let c = try ModelConfig.load(directory: Fixtures.path("opt-tiny"))
        #expect(c.architecture == .opt)
        #expect(c.vocabSize == 512 && c.hiddenSize == 64 && c.numLayers == 2)
        #expect(c.numHeads == 4 && c.numKVHeads == 4 && c.headDim == 16)
        #expect(c.intermediateSize == 256)
        #expect(c.maxPositions == 128)
        #expect(c.hiddenAct == .relu)
        #expect(c.tieWordEmbeddings)
        #expect(c.bosTokenId == 2 && c.eosTokenIds == [2] && c.padTokenId == 1)
        #expect(c.doLayerNormBefore && c.enableBias && c.layerNormElementwiseAffine && !c.removeFinalLayerNorm)
        #expect(c.wordEmbedProjDim == 64)
        #expect(c.layerNormEps == 1e-5)
        #expect(c.attentionBias && c.mlpBias)
        #expect(c.torchDtype == .f32)
    }

    @Test func llamaFixture() throws {
        let c = try ModelConfig.load(directory: Fixtures.path("llama-tiny"))
        #expect(c.architecture == .llama)
        #expect(c.vocabSize == 512 && c.hiddenSize == 64 && c.numLayers == 2)
        #expect(c.numHeads == 4 && c.numKVHeads == 2 && c.headDim == 16)
        #expect(c.intermediateSize == 160 && c.maxPositions == 128)
        #expect(c.hiddenAct == .silu)
        #expect(!c.tieWordEmbeddings)
        #expect(c.bosTokenId == 1 && c.eosTokenIds == [2] && c.padTokenId == nil)
        #expect(c.rmsNormEps == 1e-6)
        #expect(c.ropeTheta == 10000)  // from rope_parameters
        #expect(!c.attentionBias && !c.mlpBias)
        #expect(c.torchDtype == .f32)
    }

    @Test func qwen2Fixture() throws {
        let c = try ModelConfig.load(directory: Fixtures.path("qwen2-tiny"))
        #expect(c.architecture == .qwen2)
        #expect(c.numHeads == 4 && c.numKVHeads == 2 && c.headDim == 16)
        #expect(c.intermediateSize == 160)
        #expect(c.tieWordEmbeddings)  // the fixture sets it, unlike Qwen2Config's default
        #expect(c.ropeTheta == 1_000_000)
        #expect(c.attentionBias && !c.mlpBias)
        #expect(c.bosTokenId == 1 && c.eosTokenIds == [2])
    }

    static func minimal(_ modelType: String, _ extra: String = "") -> Data {
        let ffn = modelType == "opt" ? "ffn_dim" : "intermediate_size"
        return Data(#"{"model_type": "\#(modelType)", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "\#(ffn)": 64\#(extra)}"#.utf8)
    }

    @Test func transformersDefaultsForAbsentFields() throws {
        let llama = try ModelConfig(json: Self.minimal("llama"))
        #expect(llama.numKVHeads == 4 && llama.headDim == 8)
        #expect(!llama.tieWordEmbeddings && llama.ropeTheta == 10000 && llama.rmsNormEps == 1e-6)
        #expect(llama.maxPositions == 2048 && llama.bosTokenId == 1 && llama.eosTokenIds == [2])
        #expect(llama.hiddenAct == .silu && llama.torchDtype == nil)

        let qwen = try ModelConfig(json: Self.minimal("qwen2", #", "num_key_value_heads": null"#))
        #expect(qwen.numKVHeads == 4)
        #expect(!qwen.tieWordEmbeddings && qwen.attentionBias && qwen.maxPositions == 32768)
        #expect(qwen.bosTokenId == nil && qwen.eosTokenIds.isEmpty)
        // Qwen2Config's default for an absent num_key_value_heads is 32, not the query heads.
        let json = String(decoding: Self.minimal("qwen2"), as: UTF8.self)
            .replacingOccurrences(of: #""num_attention_heads": 4"#, with: #""num_attention_heads": 32"#)
            .replacingOccurrences(of: #""hidden_size": 32"#, with: #""hidden_size": 256"#)
        #expect(try ModelConfig(json: Data(json.utf8)).numKVHeads == 32)
        expectError(Self.minimal("qwen2"), "num_attention_heads 4 is not a multiple of num_key_value_heads 32")

        let opt = try ModelConfig(json: Self.minimal("opt"))
        #expect(opt.tieWordEmbeddings && opt.hiddenAct == .relu && opt.doLayerNormBefore && opt.enableBias)
        #expect(opt.wordEmbedProjDim == 32 && opt.padTokenId == 1 && opt.bosTokenId == 2)
    }

    @Test func fieldVariantsAcrossTransformersVersions() throws {
        let list = try ModelConfig(json: Self.minimal("llama", #", "eos_token_id": [2, 7], "torch_dtype": "bfloat16""#))
        #expect(list.eosTokenIds == [2, 7] && list.torchDtype == .bf16)
        let v4 = try ModelConfig(json: Self.minimal("llama", #", "rope_theta": 500000.0, "rope_scaling": null, "head_dim": 16"#))
        #expect(v4.ropeTheta == 500_000 && v4.headDim == 16)
        let v5 = try ModelConfig(json: Self.minimal("qwen2", #", "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}, "dtype": "float16", "num_key_value_heads": 2"#))
        #expect(v5.ropeTheta == 1e6 && v5.torchDtype == .f16)
        let nullKV = try ModelConfig(json: Self.minimal("llama", #", "num_key_value_heads": null, "pad_token_id": null, "torch_dtype": "auto""#))
        #expect(nullKV.numKVHeads == 4 && nullKV.padTokenId == nil && nullKV.torchDtype == nil)
        for (name, act) in [("gelu", Activation.gelu), ("gelu_new", .geluTanh), ("gelu_pytorch_tanh", .geluTanh), ("swish", .silu)] {
            #expect(try ModelConfig(json: Self.minimal("llama", #", "hidden_act": "\#(name)""#)).hiddenAct == act)
            #expect(try ModelConfig(json: Self.minimal("opt", #", "activation_function": "\#(name)""#)).hiddenAct == act)
        }
        let optVariant = try ModelConfig(json: Self.minimal("opt", #", "do_layer_norm_before": false, "word_embed_proj_dim": 16, "enable_bias": false"#))
        #expect(!optVariant.doLayerNormBefore && optVariant.wordEmbedProjDim == 16 && !optVariant.attentionBias && !optVariant.mlpBias)
    }

    private func expectError(_ json: Data, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) { try ModelConfig(json: json) } throws: { error in
            let text = "\(error)"
            return text.contains(message) && !text.contains("\n")
        }
    }

    @Test func unsupportedModelType() {
        expectError(Data(#"{"model_type": "gpt2", "vocab_size": 5}"#.utf8), "unsupported model_type 'gpt2' (supported: opt, llama, qwen2)")
    }

    @Test func missingRequiredFields() {
        expectError(Data(#"{"vocab_size": 5}"#.utf8), "missing required field 'model_type'")
        for field in ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"] {
            let json = String(decoding: Self.minimal("llama"), as: UTF8.self)
                .replacingOccurrences(of: #""\#(field)""#, with: #""unused_\#(field)""#)
            expectError(Data(json.utf8), "missing required field '\(field)'")
        }
        let opt = String(decoding: Self.minimal("opt"), as: UTF8.self).replacingOccurrences(of: "ffn_dim", with: "ffn")
        expectError(Data(opt.utf8), "missing required field 'ffn_dim'")
    }

    @Test func fieldsOfTheWrongTypeOrValue() {
        expectError(Self.minimal("llama", #", "num_key_value_heads": "2""#), "field 'num_key_value_heads' must be an integer")
        expectError(Self.minimal("llama", #", "tie_word_embeddings": 1"#), "field 'tie_word_embeddings' must be true or false")
        expectError(Self.minimal("llama", #", "eos_token_id": [1, "x"]"#), "field 'eos_token_id' must be an integer or a list")
        expectError(Self.minimal("llama", #", "hidden_act": "tanh""#), "unsupported hidden_act 'tanh'")
        expectError(Self.minimal("opt", #", "activation_function": "mish""#), "unsupported activation_function 'mish'")
        expectError(Self.minimal("llama", #", "torch_dtype": "int8""#), "unsupported torch_dtype 'int8'")
        expectError(Self.minimal("llama", #", "rope_scaling": {"rope_type": "longrope", "factor": 8.0}"#), "unsupported rope_type 'longrope'")
        expectError(Self.minimal("llama", #", "rope_scaling": {"rope_type": "llama3", "factor": 8.0}"#), "rope_scaling of rope_type 'llama3' needs 'low_freq_factor'")
        expectError(Self.minimal("qwen2", #", "use_sliding_window": true"#), "use_sliding_window is not supported")
        expectError(Self.minimal("llama", #", "num_key_value_heads": 3"#), "not a multiple of num_key_value_heads 3")
        expectError(Self.minimal("llama", #", "eos_token_id": 100"#), "eos_token_id 100 is outside the vocabulary")
        expectError(Data("[1]".utf8), "not a JSON object")
        expectError(Data("{".utf8), "not valid JSON")
    }

    @Test func loadNamesTheFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect { try ModelConfig.load(directory: dir.path) } throws: { "\($0)".contains("\(dir.path)/config.json") }
        try Data(#"{"model_type": "bert"}"#.utf8).write(to: URL(fileURLWithPath: dir.file("config.json")))
        #expect { try ModelConfig.load(directory: dir.path) } throws: {
            "\($0)" == "\(dir.path)/config.json: unsupported model_type 'bert' (supported: opt, llama, qwen2)"
        }
    }

    @Test func encodedJSONRoundTripsAndUsesHuggingFaceNames() throws {
        for model in ["opt-tiny", "llama-tiny", "qwen2-tiny"] {
            let c = try ModelConfig.load(directory: Fixtures.path(model))
            let encoded = c.encodedJSON()
            // generation_config.json is a file of its own; config.json does not carry it.
            var withoutGeneration = c
            withoutGeneration.generation = nil
            #expect(try ModelConfig(json: encoded) == withoutGeneration, "\(model)")
            let json = try JSONValue.parse([UInt8](encoded))
            #expect(json["model_type"] == .string(c.architecture.rawValue))
            #expect(json["architectures"] == .array([.string(c.architecture.causalLMClassName)]))
            #expect(json["torch_dtype"] == .string("float32"))
            // Every field the fixture's config.json sets to a value we model is written with the same value.
            let original = try JSONValue.parse([UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.path("\(model)/config.json")))))
            for key in ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                        "intermediate_size", "ffn_dim", "max_position_embeddings", "tie_word_embeddings", "bos_token_id",
                        "eos_token_id", "hidden_act", "activation_function", "rms_norm_eps", "attention_bias", "mlp_bias",
                        "do_layer_norm_before", "enable_bias", "word_embed_proj_dim", "head_dim", "rope_parameters"] {
                if let value = original[key] { #expect(json[key] == value, "\(model) \(key)") }
            }
        }
        let built = ModelConfig(architecture: .llama, vocabSize: 1000, hiddenSize: 128, numLayers: 3, numHeads: 8,
                                numKVHeads: 2, intermediateSize: 256, maxPositions: 512, torchDtype: .bf16)
        #expect(try ModelConfig(json: built.encodedJSON()) == built)
        #expect(String(decoding: built.encodedJSON(), as: UTF8.self).contains(#""torch_dtype": "bfloat16""#))
    }
}

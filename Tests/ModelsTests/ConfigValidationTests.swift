import Compute
import Foundation
import Models
import Testing

/// Values a `config.json` cannot mean are refused with one line naming the field, before anything is
/// allocated.
@Suite struct ConfigValidationTests {
    static func llama(_ fields: String) -> Data {
        Data(#"{"model_type": "llama", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64\#(fields)}"#.utf8)
    }

    func expectRefused(_ json: Data, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) { try ModelConfig(json: json) } throws: { error in
            let text = "\(error)"
            return text.contains(message) && !text.contains("\n")
        }
    }

    @Test func negativeRMSNormEps() {
        expectRefused(Self.llama(#", "rms_norm_eps": -1"#), "rms_norm_eps must be a positive number, not -1.0")
    }

    @Test func zeroRMSNormEps() {
        expectRefused(Self.llama(#", "rms_norm_eps": 0"#), "rms_norm_eps must be a positive number")
    }

    @Test func nonPositiveLayerNormEps() {
        expectRefused(Self.llama(#", "layer_norm_eps": 0"#), "layer_norm_eps must be a positive number")
        expectRefused(Data(#"{"model_type": "opt", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "ffn_dim": 64, "layer_norm_eps": -1e-5}"#.utf8),
                      "layer_norm_eps must be a positive number")
    }

    @Test func zeroRopeTheta() {
        expectRefused(Self.llama(#", "rope_theta": 0"#), "rope_theta must be a positive number, not 0.0")
    }

    @Test func negativeRopeThetaInRopeParameters() {
        expectRefused(Self.llama(#", "rope_parameters": {"rope_type": "default", "rope_theta": -10000}"#), "rope_theta must be a positive number")
    }

    @Test func nonPositiveSizes() {
        expectRefused(Self.llama("").replacing(#""hidden_size": 32"#, with: #""hidden_size": 0"#), "hidden_size must be positive, not 0")
        expectRefused(Self.llama("").replacing(#""vocab_size": 100"#, with: #""vocab_size": -5"#), "vocab_size must be positive, not -5")
        expectRefused(Self.llama("").replacing(#""intermediate_size": 64"#, with: #""intermediate_size": 0"#), "intermediate_size must be positive")
        expectRefused(Self.llama(#", "num_key_value_heads": 0"#), "num_key_value_heads must be positive")
        expectRefused(Self.llama(#", "max_position_embeddings": -1"#), "max_position_embeddings must be positive")
        expectRefused(Self.llama("").replacing(#""num_hidden_layers": 1"#, with: #""num_hidden_layers": 0"#), "num_hidden_layers must be positive")
    }

    @Test func headsThatDoNotDivideHidden() {
        expectRefused(Self.llama("").replacing(#""num_attention_heads": 4"#, with: #""num_attention_heads": 5"#),
                      "hidden_size 32 is not a multiple of num_attention_heads 5")
        // An explicit head_dim makes any head count usable, as in transformers.
        #expect(throws: Never.self) {
            try ModelConfig(json: Self.llama(#", "head_dim": 8"#).replacing(#""num_attention_heads": 4"#, with: #""num_attention_heads": 5"#))
        }
    }

    @Test func keyValueHeadsThatDoNotDivideHeads() {
        expectRefused(Self.llama(#", "num_key_value_heads": 3"#), "not a multiple of num_key_value_heads 3")
    }

    @Test func parameterTooLargeToRepresent() {
        expectRefused(Self.llama("").replacing(#""vocab_size": 100"#, with: #""vocab_size": 4611686018427387904"#),
                      "vocab_size × hidden_size")
    }

    @Test func absurdLayerCountFailsAgainstTheCheckpoint() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let source = try Fixtures.path("llama-tiny")
        var config = try String(contentsOfFile: source + "/config.json", encoding: .utf8)
        let layers = try #require(config.firstRange(of: /"num_hidden_layers": *\d+/))
        config.replaceSubrange(layers, with: #""num_hidden_layers": 10000000"#)
        try config.write(toFile: dir.file("config.json"), atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir.file("model.safetensors"), withDestinationPath: source + "/model.safetensors")
        #expect {
            _ = try LocalModel(directory: dir.path, backend: CPUBackend())
        } throws: { error in
            let text = "\(error)"
            return text.contains("num_hidden_layers 10000000, but the checkpoint holds 2 layers") && !text.contains("\n")
        }
    }
}

private extension Data {
    func replacing(_ old: String, with new: String) -> Data {
        Data(String(decoding: self, as: UTF8.self).replacingOccurrences(of: old, with: new).utf8)
    }
}

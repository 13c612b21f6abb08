import Foundation

/// Named model shapes for `colocate init-model` and the benchmarks. Weights cannot be downloaded on
/// every machine, so the system makes random ones with the real shapes; real checkpoints load through
/// the same code.
public struct ModelPreset: Sendable {
    public var name: String
    /// A Hugging Face `config.json` for this preset.
    public var configJSON: [String: any Sendable]

    public static func named(_ name: String) throws(ModelError) -> ModelPreset {
        guard let p = all.first(where: { $0.name == name }) else {
            throw ModelError("unknown preset '\(name)' (available: \(all.map(\.name).joined(separator: ", ")))")
        }
        return p
    }

    public static func names(for architecture: ModelConfig.Architecture) -> [String] {
        all.filter { ($0.configJSON["model_type"] as? String) == architecture.rawValue }.map(\.name)
    }

    public var architecture: String { configJSON["model_type"] as! String }

    public func config() throws -> ModelConfig {
        try ModelConfig(json: JSONSerialization.data(withJSONObject: configJSON, options: [.sortedKeys]))
    }

    static func opt(_ name: String, hidden: Int, layers: Int, heads: Int, ffn: Int, vocab: Int, positions: Int) -> ModelPreset {
        ModelPreset(name: name, configJSON: [
            "model_type": "opt", "architectures": ["OPTForCausalLM"], "torch_dtype": "float32",
            "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "ffn_dim": ffn,
            "vocab_size": vocab, "max_position_embeddings": positions, "word_embed_proj_dim": hidden,
            "do_layer_norm_before": true, "activation_function": "relu", "enable_bias": true,
            "layer_norm_elementwise_affine": true, "tie_word_embeddings": true,
            "bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1,
        ])
    }

    static func llamaLike(_ type: String, _ name: String, hidden: Int, layers: Int, heads: Int, kvHeads: Int,
                          ffn: Int, vocab: Int, positions: Int, theta: Double, tied: Bool) -> ModelPreset {
        ModelPreset(name: name, configJSON: [
            "model_type": type, "architectures": [type == "llama" ? "LlamaForCausalLM" : "Qwen2ForCausalLM"],
            "torch_dtype": "float32", "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kvHeads, "intermediate_size": ffn,
            "vocab_size": vocab, "max_position_embeddings": positions, "rope_theta": theta,
            "rms_norm_eps": 1e-6, "hidden_act": "silu", "tie_word_embeddings": tied,
            "bos_token_id": 1, "eos_token_id": 2,
        ])
    }

    public static let all: [ModelPreset] = [
        // The seed's facebook/opt-125m.
        opt("opt-125m", hidden: 768, layers: 12, heads: 12, ffn: 3072, vocab: 50272, positions: 2048),
        // The anchor script's ~10 GB shapes (hidden 4096, 32 layers, ffn 11008, vocab 32000).
        opt("opt-10gb", hidden: 4096, layers: 32, heads: 32, ffn: 11008, vocab: 32000, positions: 2048),
        opt("opt-tiny", hidden: 64, layers: 2, heads: 4, ffn: 256, vocab: 512, positions: 128),
        opt("opt-small", hidden: 256, layers: 4, heads: 8, ffn: 1024, vocab: 2048, positions: 512),
        llamaLike("llama", "llama-tiny", hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 160, vocab: 512,
                  positions: 128, theta: 10000, tied: false),
        llamaLike("llama", "llama-1b", hidden: 2048, layers: 16, heads: 32, kvHeads: 8, ffn: 8192, vocab: 128256,
                  positions: 4096, theta: 500000, tied: true),
        llamaLike("qwen2", "qwen2-tiny", hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 160, vocab: 512,
                  positions: 128, theta: 1_000_000, tied: true),
        llamaLike("qwen2", "qwen2-0.5b", hidden: 896, layers: 24, heads: 14, kvHeads: 2, ffn: 4864, vocab: 151936,
                  positions: 4096, theta: 1_000_000, tied: true),
    ]
}

import Compute
import Foundation

/// Random initialisation as Hugging Face's `_init_weights` does it: linear and embedding weights
/// ~ N(0, 0.02²), biases 0, norm weights 1 and norm biases 0. Seeded and reproducible.
public enum RandomWeights {
    public static func make(config: ModelConfig, seed: UInt64, dtype: DType = .f32) throws -> [(name: String, tensor: Tensor)] {
        var rng = SplitMix64(seed: seed)
        var out: [(String, Tensor)] = []
        for spec in ParameterTable(config: config).specs {
            let t = try Tensor.zeros(spec.shape, dtype: .f32)
            let p = t.pointer(Float.self)
            let isNorm = spec.name.contains("norm")
            if spec.name.hasSuffix(".bias") {
                // zeros already
            } else if isNorm {
                p.update(repeating: 1, count: t.count)
            } else {
                fillNormal(p, count: t.count, std: 0.02, rng: &rng)
            }
            out.append((spec.name, dtype == .f32 ? t : try t.converted(to: dtype)))
        }
        return out
    }

    /// Box–Muller over SplitMix64: two normals per pair of uniforms.
    public static func fillNormal(_ p: UnsafeMutablePointer<Float>, count: Int, std: Float, rng: inout SplitMix64) {
        var i = 0
        while i < count {
            let u1 = max(rng.nextUnitFloat(), 1e-7), u2 = rng.nextUnitFloat()
            let r = (-2 * logf(u1)).squareRoot() * std
            let a = 2 * Float.pi * u2
            p[i] = r * cosf(a)
            if i + 1 < count { p[i + 1] = r * sinf(a) }
            i += 2
        }
    }
}

/// Writes a complete Hugging Face model directory: config.json, generation_config.json,
/// model.safetensors and tokenizer.json.
public enum ModelDirectory {
    public static func write(preset: ModelPreset, to directory: String, seed: UInt64, dtype: DType = .f32) throws {
        let config = try preset.config()
        // FileIO rather than Foundation: its errors are one line naming the path (an existing file at
        // `directory`, a symbolic link as config.json), not NSCocoaErrorDomain codes.
        try FileIO.makeDirectories(directory)
        var json = preset.configJSON
        json["torch_dtype"] = dtype == .f32 ? "float32" : dtype == .bf16 ? "bfloat16" : "float16"
        try FileIO.writeAtomically(directory + "/config.json",
                                   bytes: Array(try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])))
        let generation: [String: Any] = ["bos_token_id": config.bosTokenId ?? 0, "eos_token_id": config.eosTokenIds.first ?? 0]
        try FileIO.writeAtomically(directory + "/generation_config.json",
                                   bytes: Array(try JSONSerialization.data(withJSONObject: generation, options: [.prettyPrinted, .sortedKeys])))
        let weights = try RandomWeights.make(config: config, seed: seed, dtype: dtype)
        try Checkpoint.write(tensors: weights, to: directory, maxShardBytes: 4 << 30)
        try SyntheticTokenizer.write(vocabSize: config.vocabSize, bos: config.bosTokenId, eos: config.eosTokenIds.first,
                                     pad: config.padTokenId, to: directory + "/tokenizer.json")
    }
}

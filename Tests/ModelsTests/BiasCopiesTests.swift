import Compute
import Testing
@testable import Models

/// What a model hands to `ComputeBackend.refreshBiasCopies` each step: the biases of its linear layers
/// (which cuBLASLt may add from f32 copies), never a norm's bias.
@Suite struct BiasCopiesTests {
    func linearBiasNames(_ preset: String) throws -> Set<String> {
        let config = try ModelPreset.named(preset).config()
        let backend = CPUBackend()
        let weights = try RandomWeights.make(config: config, seed: 0)
        let model = try TransformerModel(config: config, weights: Dictionary(uniqueKeysWithValues: weights.map { ($0.name, $0.tensor) }),
                                         backend: backend)
        // Host tensors: a tensor is known by the address of its first element.
        let names = Dictionary(uniqueKeysWithValues: weights.map { (Int(bitPattern: $0.tensor.rawPointer), $0.name) })
        return Set(model.linearBiases.map { names[Int(bitPattern: $0.rawPointer)] ?? "?" })
    }

    @Test func optHandsOverEveryLinearBiasAndNoNormBias() throws {
        let config = try ModelPreset.named("opt-tiny").config()
        let names = try linearBiasNames("opt-tiny")
        let expected = (0..<config.numLayers).flatMap { l in
            ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"].map {
                "model.decoder.layers.\(l).\($0).bias"
            }
        }
        #expect(names == Set(expected))
    }

    @Test func qwen2HandsOverItsQKVBiases() throws {
        let config = try ModelPreset.named("qwen2-tiny").config()
        let names = try linearBiasNames("qwen2-tiny")
        let expected = (0..<config.numLayers).flatMap { l in ["q_proj", "k_proj", "v_proj"].map { "model.layers.\(l).self_attn.\($0).bias" } }
        #expect(names == Set(expected))
    }
}

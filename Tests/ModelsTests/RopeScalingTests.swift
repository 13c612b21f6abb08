import Compute
import Foundation
import Models
import Testing

/// Scaled RoPE (Llama 3.1 `llama3`, Qwen2.5 `yarn`, `linear`, `dynamic`) against transformers: tiny
/// models whose golden logits cover positions past `original_max_position_embeddings`, in both
/// config layouts (transformers 5 `rope_parameters`, hub `rope_scaling` + top-level `rope_theta`).
@Suite struct RopeScalingTests {
    static let models = ["rope/llama-tiny-rope-llama3", "rope/llama-tiny-rope-llama3-legacy-config", "rope/qwen2-tiny-rope-yarn"]

    func rows(_ t: Tensor) -> [[Int32]] {
        let flat = t.integers().map { Int32($0) }
        let width = t.shape[1]
        return (0..<t.shape[0]).map { Array(flat[$0 * width..<($0 + 1) * width]) }
    }

    @Test(arguments: models)
    func logitsMatchTransformers(model: String) throws {
        let local = try LocalModel(directory: Fixtures.path(model), backend: CPUBackend())
        let g = try SafeTensorsFile(path: Fixtures.path("\(model)/golden.safetensors"))
        let inputs = rows(try g.tensor("input_ids"))
        #expect(inputs[0].count > 64, "the inputs must run past original_max_position_embeddings")
        let logits = try local.logits(inputIds: inputs)
        let expected = try g.tensor("logits")
        #expect(logits.shape == expected.shape)
        let maxDiff = zip(logits.floats(), expected.floats()).map { abs($0 - $1) }.max() ?? .infinity
        #expect(maxDiff <= 1e-4, "max |Δ| = \(maxDiff)")
    }

    @Test(arguments: models)
    func greedyGenerationMatchesTransformers(model: String) throws {
        let local = try LocalModel(directory: Fixtures.path(model), backend: CPUBackend())
        let g = try SafeTensorsFile(path: Fixtures.path("\(model)/golden.safetensors"))
        let prompt = rows(try g.tensor("generate_prompt"))[0]
        let expected = rows(try g.tensor("generate_greedy"))[0]
        let out = try local.generate(prompts: [prompt], params: SamplingParams(maxTokens: expected.count, temperature: 0))
        #expect(out[0][0].tokenIds == expected)
    }

    @Test func bothConfigLayoutsReadTheSame() throws {
        let new = try ModelConfig.load(directory: Fixtures.path("rope/llama-tiny-rope-llama3"))
        let legacy = try ModelConfig.load(directory: Fixtures.path("rope/llama-tiny-rope-llama3-legacy-config"))
        #expect(new.ropeScaling == .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64))
        #expect(new.ropeScaling == legacy.ropeScaling)
        #expect(new.ropeTheta == 500_000 && legacy.ropeTheta == 500_000)
        let yarn = try ModelConfig.load(directory: Fixtures.path("rope/qwen2-tiny-rope-yarn"))
        // The explicit factor 4, although max_position_embeddings / original is 8.
        #expect(yarn.ropeScaling == .yarn(.init(factor: 4, originalMaxPositions: 64)))
    }

    static func config(_ rope: String, extra: String = "") throws -> ModelConfig {
        try ModelConfig(json: Array("""
        {"model_type": "llama", "vocab_size": 16, "hidden_size": 32, "num_hidden_layers": 1,
         "num_attention_heads": 2, "intermediate_size": 8, "max_position_embeddings": 128,
         "rope_theta": 10000.0, \(extra) "rope_scaling": \(rope)}
        """.utf8))
    }

    /// Inverse frequencies computed with numpy in float32, following `modeling_rope_utils.py` op by op,
    /// for head_dim 16 and base 10000.
    @Test func inverseFrequenciesMatchTheReferenceFormulas() throws {
        let cases: [(String, [Float], Float)] = [
            (#"{"type": "linear", "factor": 2.0}"#, Self.linearReference, 1),
            (#"{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32}"#, Self.llama3Reference, 1),
            (#"{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}"#, Self.yarnReference, Self.yarnAttention),
            (#"{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "beta_fast": 16, "beta_slow": 2, "truncate": false, "mscale": 0.707, "mscale_all_dim": 1.0}"#, Self.yarnUntruncatedReference, Self.yarnMscaleAttention),
        ]
        for (rope, expected, scaling) in cases {
            let c = try Self.config(rope)
            let e = c.ropeScaling.embedding(headDim: c.headDim, theta: c.ropeTheta, maxPositions: c.maxPositions)
            #expect(e.inverseFrequencies.count == expected.count)
            for (a, b) in zip(e.inverseFrequencies, expected) {
                #expect(abs(a - b) <= 2 * b.ulp, "\(rope): \(a) vs \(b)")
            }
            #expect(abs(e.attentionScaling - scaling) <= scaling.ulp, "\(rope)")
        }
    }

    @Test func dynamicNTKGrowsTheBaseOnlyPastMaxPositions() throws {
        let c = try Self.config(#"{"type": "dynamic", "factor": 2.0}"#)
        let plain = RotaryEmbedding(theta: 10000, headDim: 16)
        let short = c.ropeScaling.embedding(headDim: 16, theta: 10000, maxPositions: 128, sequenceLength: 100)
        #expect(short.inverseFrequencies == plain.inverseFrequencies)
        let long = c.ropeScaling.embedding(headDim: 16, theta: 10000, maxPositions: 128, sequenceLength: 256)
        for (a, b) in zip(long.inverseFrequencies, Self.dynamicReference256) {
            #expect(abs(a - b) <= 4 * b.ulp, "\(a) vs \(b)")
        }
        #expect(long.inverseFrequencies[0] == 1)
    }

    @Test func unsupportedOrIncompleteScalingIsRefusedWithTheField() throws {
        let bad: [(String, String)] = [
            (#"{"rope_type": "longrope", "factor": 2.0}"#, "unsupported rope_type 'longrope'"),
            (#"{"rope_type": "llama3", "factor": 8.0}"#, "needs 'low_freq_factor'"),
            (#"{"rope_type": "linear"}"#, "needs 'factor'"),
            (#"{"rope_type": "linear", "factor": -2}"#, "factor must be positive"),
            (#"{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0, "original_max_position_embeddings": 32}"#, "must be larger than low_freq_factor"),
            (#"{"rope_type": "yarn", "factor": "big"}"#, "must be a number"),
            (#"{"rope_type": "default", "partial_rotary_factor": 0.5}"#, "partial_rotary_factor"),
            (#"[1, 2]"#, "must be an object"),
        ]
        for (rope, message) in bad {
            #expect {
                _ = try Self.config(rope)
            } throws: { error in
                "\(error)".contains(message) && !"\(error)".contains("\n")
            }
        }
    }

    @Test func writtenConfigsKeepTheScaling() throws {
        let c = try Self.config(#"{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "attention_factor": 1.5}"#)
        let again = try ModelConfig(json: c.encodedJSON())
        #expect(again.ropeScaling == c.ropeScaling)
        #expect(again.ropeTheta == c.ropeTheta)
    }

    @Test func theThetaOnlyPathIsUnchanged() {
        // The old `rotary(theta:)` entry point is RotaryEmbedding(theta:headDim:) with scale 1.
        let backend = CPUBackend()
        let values = (0..<(3 * 2 * 8)).map { Float($0 % 7) - 3 }
        let a = Tensor(values, shape: [3, 2, 8]), b = Tensor(values, shape: [3, 2, 8])
        backend.rotary(a, positions: [0, 5, 9], theta: 10_000)
        backend.rotary(b, positions: [0, 5, 9], embedding: RotaryEmbedding(theta: 10_000, headDim: 8))
        #expect(a.floats() == b.floats())
        // attentionScaling multiplies cos and sin: position 0 becomes a plain scale.
        let c = Tensor(values, shape: [3, 2, 8])
        backend.rotary(c, positions: [0, 0, 0], embedding: RotaryEmbedding(inverseFrequencies: [1, 1, 1, 1], attentionScaling: 2))
        #expect(c.floats() == values.map { $0 * 2 })
    }

    static let linearReference: [Float] = [0.5, 0.15811388194561005, 0.05000000074505806, 0.015811389312148094, 0.004999999888241291, 0.0015811389312148094, 0.0005000000237487257, 0.00015811389312148094]
    static let llama3Reference: [Float] = [1.0, 0.0958399772644043, 0.012500000186264515, 0.0039528473280370235, 0.0012499999720603228, 0.00039528473280370235, 0.0001250000059371814, 3.9528473280370235e-05]
    static let yarnReference: [Float] = [1.0, 0.19764235615730286, 0.02500000037252903, 0.007905694656074047, 0.0024999999441206455, 0.0007905694656074047, 0.0002500000118743628, 7.905694656074047e-05]
    static let yarnAttention: Float = 1.13862943649292
    static let yarnUntruncatedReference: [Float] = [1.0, 0.07905694097280502, 0.02500000037252903, 0.007905694656074047, 0.0024999999441206455, 0.0007905694656074047, 0.0002500000118743628, 7.905694656074047e-05]
    static let yarnMscaleAttention: Float = 0.9643269181251526
    static let dynamicReference256: [Float] = [1.0, 0.2702961266040802, 0.07305999100208282, 0.019747832790017128, 0.005337762646377087, 0.0014427765272557735, 0.00038997692172415555, 0.00010540924267843366]
}

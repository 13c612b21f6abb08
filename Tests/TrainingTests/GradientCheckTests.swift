import Compute
import Foundation
import Models
import Testing
import Training

/// The architecture variants the golden fixtures do not cover — post-LN OPT with project_in/out (the
/// opt-350m layout), Llama with attention and MLP biases and a tied lm_head — checked by directional
/// derivatives: for each parameter tensor W and a random direction D, (L(W + εD) − L(W − εD)) / 2ε
/// equals Σ ∂L/∂W · D.
@Suite struct GradientCheckTests {
    static func postLNOPT() -> ModelConfig {
        var c = ModelConfig(architecture: .opt, vocabSize: 40, hiddenSize: 48, numLayers: 2, numHeads: 4,
                            intermediateSize: 64, maxPositions: 32)
        c.doLayerNormBefore = false
        c.wordEmbedProjDim = 32
        // Smooth, so that finite differences do not straddle ReLU's kink (ReLU's backward has its own test).
        c.hiddenAct = .gelu
        return c
    }

    static func biasedLlama() -> ModelConfig {
        var c = ModelConfig(architecture: .llama, vocabSize: 40, hiddenSize: 48, numLayers: 2, numHeads: 4, numKVHeads: 2,
                            headDim: 12, intermediateSize: 64, maxPositions: 32)
        c.attentionBias = true
        c.mlpBias = true
        c.tieWordEmbeddings = true
        return c
    }

    static func untiedQwen2() -> ModelConfig {
        var c = ModelConfig(architecture: .qwen2, vocabSize: 40, hiddenSize: 32, numLayers: 1, numHeads: 4, numKVHeads: 1,
                            headDim: 8, intermediateSize: 48, maxPositions: 32)
        c.ropeTheta = 1000
        return c
    }

    @Test(arguments: [("post-LN OPT with projections", postLNOPT()), ("Llama with biases, tied", biasedLlama()),
                      ("Qwen2 untied, one kv head", untiedQwen2())])
    func directionalDerivativesMatch(name: String, config: ModelConfig) throws {
        var rng = SplitMix64(seed: 7)
        var weights: [String: Tensor] = [:], gradients: [String: Tensor] = [:]
        for (parameter, t) in try RandomWeights.make(config: config, seed: 1) {
            // Perturb everything (norm weights, biases too) so that every path carries gradient.
            let p = t.pointer(Float.self)
            for i in 0..<t.count { p[i] += (rng.nextUnitFloat() * 2 - 1) * 0.2 }
            weights[parameter] = t
            gradients[parameter] = try Tensor.zeros(t.shape)
        }
        let model = try TrainingModel(config: config, weights: weights, gradients: gradients, backend: CPUBackend(), logitChunkRows: 7)
        let batch = TokenBatch(ids: (0..<18).map { _ in Int32(rng.next() % 40) }, batch: 2, sequence: 9)
        let objective = CrossEntropyObjective.mean(batch: batch)
        _ = try model.forwardBackward(batch, objective: objective)

        func loss() throws -> Double {
            let lp = try model.logProbs(batch, entropy: false).logProbs
            return zip(lp, objective.weights).reduce(0) { $0 - Double($1.0) * Double($1.1) }
        }
        let epsilon: Float = 1e-2
        for parameter in ParameterTable(config: config).names {
            let w = weights[parameter]!, p = w.pointer(Float.self)
            let original = w.floats()
            let direction = (0..<w.count).map { _ in rng.nextUnitFloat() * 2 - 1 }
            for i in 0..<w.count { p[i] = original[i] + epsilon * direction[i] }
            let plus = try loss()
            for i in 0..<w.count { p[i] = original[i] - epsilon * direction[i] }
            let minus = try loss()
            for i in 0..<w.count { p[i] = original[i] }
            let numeric = (plus - minus) / Double(2 * epsilon)
            let analytic = zip(gradients[parameter]!.floats(), direction).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            #expect(abs(numeric - analytic) <= 0.02 * abs(analytic) + 2e-4,
                    "\(name) \(parameter): numeric \(numeric), analytic \(analytic)")
        }
    }
}

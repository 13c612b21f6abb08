import Compute
import Foundation
import Models

/// Generation throughput of one model replica (CPU or one GPU), the way HF `generate` is measured by
/// the anchor script (prompt 128, 128 new tokens, greedy, EOS ignored): `colocate bench decode`.
public struct DecodeBenchmark: Sendable {
    /// A preset's shapes with random weights, or a model directory.
    public enum Source: Sendable {
        case preset(String)
        case directory(String)
    }
    public var source: Source
    public var batchSizes: [Int]
    public var promptTokens: Int
    public var newTokens: Int
    public var weightType: DType

    public init(source: Source, batchSizes: [Int], promptTokens: Int, newTokens: Int, weightType: DType) {
        self.source = source
        self.batchSizes = batchSizes
        self.promptTokens = promptTokens
        self.newTokens = newTokens
        self.weightType = weightType
    }

    /// Prints one line per batch size.
    public func run(on backend: any ComputeBackend) async throws {
        let transformer: TransformerModel
        let name: String
        switch source {
        case .directory(let model):
            transformer = try LocalModel(directory: model, dtype: weightType, backend: backend).model
            name = model
        case .preset(let preset):
            let p = try ModelPreset.named(preset)
            let config = try p.config()
            var weights: [String: Tensor] = [:]
            for (n, t) in try RandomWeights.make(config: config, seed: 0, dtype: weightType) { weights[n] = try backend.upload(t) }
            transformer = try TransformerModel(config: config, weights: weights, backend: backend)
            name = preset
        }
        print("bench decode: \(name) on \(backend.device), weights \(weightType), prompt \(promptTokens), new \(newTokens), \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print("batch | new tokens/s (prefill+decode) | decode tokens/s | prefill ms")
        for b in batchSizes {
            var rng = SplitMix64(seed: UInt64(b))
            let vocab = transformer.config.vocabSize
            let prompts = (0..<b).map { _ in (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(vocab - 4)) + 4 } }
            let blockSize = 16
            // One block more than the batch needs: a recorded decode step keeps one for its padding rows.
            let blocks = b * ((promptTokens + newTokens + blockSize - 1) / blockSize) + 1
            let generator = Generator(model: transformer, cache: try transformer.makeCache(blockSize: blockSize, numBlocks: blocks))
            let prefillOnly = SamplingParams(maxTokens: 1, temperature: 0, ignoreEOS: true)
            let full = SamplingParams(maxTokens: newTokens, temperature: 0, ignoreEOS: true)
            _ = try generator.generate(prompts: [prompts[0]], params: prefillOnly)  // warm-up
            try OpProfileReport.print(backend, label: "warm-up, discarded", top: 0)
            let t0 = ContinuousClock.now
            _ = try generator.generate(prompts: prompts, params: prefillOnly)
            let prefill = ContinuousClock.now - t0
            let t1 = ContinuousClock.now
            _ = try generator.generate(prompts: prompts, params: full)
            let total = ContinuousClock.now - t1
            let totalS = total.inSeconds
            let prefillS = prefill.inSeconds
            let newTotal = Double(b * newTokens)
            print(String(format: "%5d | %29.1f | %15.1f | %10.1f", b, newTotal / totalS,
                         Double(b * (newTokens - 1)) / max(totalS - prefillS, 1e-9), prefillS * 1e3)
                + (generator.recordedStepShapes > 0 ? "   (decode as CUDA graphs: \(generator.recordedStepShapes) shapes)" : ""))
            try OpProfileReport.print(backend, label: "batch \(b): prefill + full generation")
        }
    }
}

import ArgumentParser
import Compute
import Foundation
import Models

/// `colocate bench decode`: generation throughput of one model replica (CPU or one GPU), the way HF
/// `generate` is measured by the anchor script (prompt 128, 128 new tokens, greedy, EOS ignored).
struct BenchDecode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode", abstract: "Tokens/s of generation for a preset at several batch sizes.")

    @Option(help: "Model preset (random weights with its shapes).")
    var preset: String = "opt-125m"
    @Option(help: "Model directory instead of a preset.")
    var model: String?
    @Option(help: "Batch sizes, comma-separated.")
    var batch: String = "1,16"
    @Option(help: "Prompt tokens per sequence.")
    var promptTokens: Int = 128
    @Option(help: "New tokens per sequence.")
    var newTokens: Int = 128
    @Option(help: "Weight dtype: f32, bf16 or f16.")
    var dtype: String = "f32"
    @Option(help: "Device: cpu, cuda or cuda:N.")
    var device: String = "cpu"

    func run() async throws {
        let backend = try Backends.make(device: device)
        let weightType = try CLIParse.dtype(dtype)
        let transformer: TransformerModel
        let name: String
        if let model {
            transformer = try LocalModel(directory: model, dtype: weightType, backend: backend).model
            name = model
        } else {
            let p = try ModelPreset.named(preset)
            let config = try p.config()
            var weights: [String: Tensor] = [:]
            for (n, t) in try RandomWeights.make(config: config, seed: 0, dtype: weightType) { weights[n] = try backend.upload(t) }
            transformer = try TransformerModel(config: config, weights: weights, backend: backend)
            name = preset
        }
        let sizes = try batch.split(separator: ",").map { s -> Int in
            guard let v = Int(s), v > 0 else { throw CLIError("bad batch size '\(s)'") }
            return v
        }
        print("bench decode: \(name) on \(backend.device), weights \(weightType), prompt \(promptTokens), new \(newTokens), \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print("batch | new tokens/s (prefill+decode) | decode tokens/s | prefill ms")
        for b in sizes {
            var rng = SplitMix64(seed: UInt64(b))
            let vocab = transformer.config.vocabSize
            let prompts = (0..<b).map { _ in (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(vocab - 4)) + 4 } }
            let blockSize = 16
            let blocks = b * ((promptTokens + newTokens + blockSize - 1) / blockSize)
            let generator = Generator(model: transformer, cache: try transformer.makeCache(blockSize: blockSize, numBlocks: blocks))
            let prefillOnly = SamplingParams(maxTokens: 1, temperature: 0, ignoreEOS: true)
            let full = SamplingParams(maxTokens: newTokens, temperature: 0, ignoreEOS: true)
            _ = try generator.generate(prompts: [prompts[0]], params: prefillOnly)  // warm-up
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
                         Double(b * (newTokens - 1)) / max(totalS - prefillS, 1e-9), prefillS * 1e3))
        }
    }
}

import Compute
import Foundation
import Models

/// Generation throughput of one model replica (CPU or one GPU), the way HF `generate` is measured by
/// the anchor script (prompt 128, 128 new tokens, greedy, EOS ignored): `colocate bench decode`.
///
/// With ``variableLengths``, each batch size also runs rollouts of different lengths through continuous
/// batching, and the figure is set beside the fixed-length one of the same batch size and run.
public struct DecodeBenchmark: Sendable {
    /// A preset's shapes with random weights, or a model directory.
    public enum Source: Sendable {
        case preset(String)
        case directory(String)
    }

    /// Rollouts that stop at different lengths (`--variable-lengths`): a fixed number of requests, each
    /// with its own number of new tokens drawn uniformly from `lengths` (seeded), through one
    /// `Generator` that runs at most `batch` sequences at once and admits a waiting request as soon as
    /// a running one finishes — continuous batching, as an RL step's rollouts meet it.
    public struct VariableLengths: Sendable {
        /// Requests per batch size; nil means 4 × the batch size.
        public var requests: Int?
        /// New tokens of a request, drawn uniformly from this range; clamped to the positions the model
        /// has left after the prompt.
        public var lengths: ClosedRange<Int>
        public var seed: UInt64

        public init(requests: Int? = nil, lengths: ClosedRange<Int> = 16...512, seed: UInt64 = 0) {
            self.requests = requests
            self.lengths = lengths
            self.seed = seed
        }
    }

    public var source: Source
    public var batchSizes: [Int]
    public var promptTokens: Int
    public var newTokens: Int
    public var weightType: DType
    public var variableLengths: VariableLengths?

    public init(source: Source, batchSizes: [Int], promptTokens: Int, newTokens: Int, weightType: DType,
                variableLengths: VariableLengths? = nil) {
        self.source = source
        self.batchSizes = batchSizes
        self.promptTokens = promptTokens
        self.newTokens = newTokens
        self.weightType = weightType
        self.variableLengths = variableLengths
    }

    /// Prints one line per batch size (and, with ``variableLengths``, a second table).
    public func run(on backend: any ComputeBackend) async throws {
        guard !batchSizes.isEmpty, batchSizes.allSatisfy({ $0 > 0 }) else { throw BenchmarkError("batch sizes must be positive") }
        guard promptTokens > 0, newTokens > 0 else { throw BenchmarkError("prompt and new tokens must be positive") }
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
        let positions = transformer.config.maxPositions
        guard promptTokens + newTokens <= positions else {
            throw BenchmarkError("prompt \(promptTokens) + new \(newTokens) tokens exceed the \(positions) positions of \(name)")
        }
        // Checked before the fixed-length runs, so a bad range fails at once.
        let variableRange = try variableLengths.map { try effectiveLengths($0.lengths, positions: positions) }

        print("bench decode: \(name) on \(backend.device), weights \(weightType), prompt \(promptTokens), new \(newTokens), \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print("batch | new tokens/s (prefill+decode) | decode tokens/s | prefill ms")
        var fixedRates: [Int: Double] = [:]
        for b in batchSizes {
            let prompts = Self.prompts(count: b, length: promptTokens, vocab: transformer.config.vocabSize, seed: UInt64(b))
            let generator = Generator(model: transformer, cache: try makeCache(transformer, sequences: b, newTokens: newTokens))
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
            fixedRates[b] = newTotal / totalS
            print(String(format: "%5d | %29.1f | %15.1f | %10.1f", b, newTotal / totalS,
                         Double(b * (newTokens - 1)) / max(totalS - prefillS, 1e-9), prefillS * 1e3)
                + (generator.recordedStepShapes > 0 ? "   (decode as CUDA graphs: \(generator.recordedStepShapes) shapes)" : ""))
            try OpProfileReport.print(backend, label: "batch \(b): prefill + full generation")
        }

        guard let variable = variableLengths, let range = variableRange else { return }
        let clamped = range != variable.lengths ? " (clamped from \(variable.lengths.lowerBound)...\(variable.lengths.upperBound) to the model's \(positions) positions)" : ""
        print("variable lengths: new tokens uniform in \(range.lowerBound)...\(range.upperBound)\(clamped), seed \(variable.seed), prompt \(promptTokens); at most `batch` sequences run, a waiting request is admitted as one finishes")
        print("batch | requests | new tokens | seconds | new tokens/s (prefill+decode) | fixed \(newTokens) new at this batch | ratio")
        for b in batchSizes {
            let requests = variable.requests ?? 4 * b
            guard requests > 0 else { throw BenchmarkError("--requests must be positive") }
            var rng = SplitMix64(seed: variable.seed &+ UInt64(b) &* 0x9E37_79B9)
            let span = UInt64(range.upperBound - range.lowerBound + 1)
            let lengths = (0..<requests).map { _ in range.lowerBound + Int(rng.next() % span) }
            let prompts = Self.prompts(count: requests, length: promptTokens, vocab: transformer.config.vocabSize, seed: variable.seed &+ UInt64(b))
            // Room for `b` sequences of the longest length at once: nothing is preempted, so the figure
            // is continuous batching alone.
            let generator = Generator(model: transformer, cache: try makeCache(transformer, sequences: b, newTokens: range.upperBound),
                                      maxSequences: b)
            let params = SamplingParams(maxTokens: range.upperBound, temperature: 0, ignoreEOS: true)
            let start = ContinuousClock.now
            let completions = try generator.generate(prompts: prompts, params: params, maxTokensPerPrompt: lengths)
            let seconds = (ContinuousClock.now - start).inSeconds
            let produced = completions.reduce(0) { $0 + $1.reduce(0) { $0 + $1.tokenIds.count } }
            let asked = lengths.reduce(0, +)
            guard produced == asked else {
                throw BenchmarkError("variable-length run at batch \(b): \(produced) new tokens generated, \(asked) asked")
            }
            let rate = Double(produced) / seconds
            let fixed = fixedRates[b] ?? .nan
            print(String(format: "%5d | %8d | %10d | %7.2f | %29.1f | %28.1f | %5.2f", b, requests, produced, seconds, rate, fixed, rate / fixed))
        }
    }

    /// The lengths actually drawn: `lengths` cut to the positions left after the prompt.
    private func effectiveLengths(_ lengths: ClosedRange<Int>, positions: Int) throws -> ClosedRange<Int> {
        guard lengths.lowerBound >= 1 else { throw BenchmarkError("variable lengths must be at least 1 new token, got \(lengths.lowerBound)") }
        let room = positions - promptTokens
        guard room >= lengths.lowerBound else {
            throw BenchmarkError("the model has \(positions) positions: a prompt of \(promptTokens) leaves \(max(room, 0)) for new tokens, fewer than the shortest variable length (\(lengths.lowerBound))")
        }
        return lengths.lowerBound...min(lengths.upperBound, room)
    }

    /// A paged KV cache with room for `sequences` sequences of the prompt plus `newTokens`.
    private func makeCache(_ model: TransformerModel, sequences: Int, newTokens: Int) throws -> KVCache {
        let blockSize = 16
        // One block more than the sequences need: a recorded decode step keeps one for its padding rows.
        let blocks = sequences * ((promptTokens + newTokens + blockSize - 1) / blockSize) + 1
        return try model.makeCache(blockSize: blockSize, numBlocks: blocks)
    }

    /// `count` random prompts of `length` ids, clear of the lowest (special) ids.
    private static func prompts(count: Int, length: Int, vocab: Int, seed: UInt64) -> [[Int32]] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in (0..<length).map { _ in Int32(rng.next() % UInt64(vocab - 4)) + 4 } }
    }
}

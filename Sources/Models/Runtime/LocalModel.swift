import Compute
import Foundation

/// A whole model in this process (tensor-parallel size 1): what `colocate generate` and `colocate logits`
/// run, and the reference the engine is compared against.
///
/// Device-agnostic: weights and cache live on `backend`'s device, each request runs as one
/// `backend.perform` (on a GPU's executor thread), and results come back to the host.
public final class LocalModel: @unchecked Sendable {
    public let directory: String
    public let model: TransformerModel
    public let tokenizer: Tokenizer?

    public init(directory: String, dtype: DType = .f32, backend: any ComputeBackend) throws {
        guard FileManager.default.fileExists(atPath: directory + "/config.json") else {
            throw ModelError("\(directory) is not a model directory (no config.json)")
        }
        self.directory = directory
        let (config, weights) = try backend.perform {
            try ModelLoader.load(directory: directory, dtype: dtype, backend: backend) { _, shape, dtype in
                try backend.zeros(shape, dtype: dtype)
            }
        }
        model = try TransformerModel(config: config, weights: weights, backend: backend)
        let tokenizerPath = directory + "/tokenizer.json"
        tokenizer = FileManager.default.fileExists(atPath: tokenizerPath) ? try Tokenizer(path: tokenizerPath) : nil
    }

    public var config: ModelConfig { model.config }

    /// The sampling defaults of this model: vLLM's defaults, overridden by what
    /// `generation_config.json` sets (see `GenerationConfig.samplingDefaults`).
    public var defaultSamplingParams: SamplingParams {
        config.generation?.samplingDefaults() ?? SamplingParams()
    }

    /// Generates with a cache sized for exactly this request.
    public func generate(prompts: [[Int32]], params: SamplingParams, blockSize: Int = 16) throws -> [[Completion]] {
        try params.validate()
        // No sequence outgrows the model's positions, so clamp before adding (huge --max-tokens is fine).
        let longestPrompt = min(prompts.map(\.count).max() ?? 0, config.maxPositions)
        let perSequence = min(longestPrompt + min(params.maxTokens, config.maxPositions), config.maxPositions)
        let blocksPerSequence = (perSequence + blockSize - 1) / blockSize
        let (sequences, overflow) = prompts.count.multipliedReportingOverflow(by: params.n)
        let (blocks, overflow2) = blocksPerSequence.multipliedReportingOverflow(by: sequences)
        guard !overflow, !overflow2, blocks <= 1 << 31 else {
            throw ModelError("\(prompts.count) prompts × n \(params.n) is more sequences than a KV cache can hold")
        }
        return try model.backend.perform {
            // One block more: a recorded decode step (GPU) keeps one for its padding rows.
            let cache = try model.makeCache(blockSize: blockSize, numBlocks: blocks + 1)
            return try Generator(model: model, cache: cache).generate(prompts: prompts, params: params)
        }
    }

    /// Logits of every position of each row of `inputIds` ([B][T]), as `[B, T, V]` f32.
    public func logits(inputIds: [[Int32]]) throws -> Tensor {
        let b = inputIds.count, t = inputIds.first?.count ?? 0, v = config.vocabSize
        guard b > 0, t > 0, inputIds.allSatisfy({ $0.count == t }) else {
            throw ModelError("input_ids must be a non-empty [batch, tokens] matrix")
        }
        guard t <= config.maxPositions else {
            throw ModelError("input has \(t) tokens; the model has \(config.maxPositions) positions")
        }
        let blockSize = 16, blocksPerRow = (t + blockSize - 1) / blockSize
        var tables: [[Int32]] = [], seq: [Int32] = [], pos: [Int32] = []
        for r in 0..<b {
            tables.append((0..<blocksPerRow).map { Int32(r * blocksPerRow + $0) })
            seq += [Int32](repeating: Int32(r), count: t)
            pos += (0..<t).map { Int32($0) }
        }
        let layout = AttentionLayout(blockSize: blockSize, blockTables: tables, sequenceOfToken: seq, positionOfToken: pos)
        let logits = try model.backend.perform {
            let cache = try model.makeCache(blockSize: blockSize, numBlocks: blocksPerRow * b)
            let rows = try model.forward(tokens: inputIds.flatMap { $0 }, layout: layout, cache: cache, logitRows: Array(0..<(b * t)))
            return try model.backend.download(rows)
        }
        try Self.checkFinite(logits, tokens: t)
        return logits.reshaped([b, t, v])
    }

    /// Throws naming the first row (batch row, position) of `logits` ([B·T, V] f32 on the host) that
    /// holds a NaN or an infinity: NaN weights or a broken config, not results.
    static func checkFinite(_ logits: Tensor, tokens t: Int) throws {
        let v = logits.shape.last ?? 0
        let p = logits.pointer(Float.self)
        for i in 0..<logits.count where !p[i].isFinite {
            let row = i / max(v, 1)
            throw ModelError("the model's logits are not finite (\(p[i]) at batch row \(row / t), position \(row % t), token \(i % max(v, 1))); check the weights and config.json")
        }
    }
}

import Foundation
import Models

/// Token rows to train on: `rows` sequences of `sequence` ids each (row-major), and a per-token loss
/// mask of the same layout (1 where the token is trained on, 0 for prompts and padding). As in
/// ``TokenBatch``, entry (r, t) concerns token t predicted from tokens before it, so column 0 is
/// always 0.
public struct TrainingData: Sendable, Equatable {
    public var ids: [Int32]
    public var lossMask: [Float]
    public var rows: Int
    public var sequence: Int

    public init(ids: [Int32], lossMask: [Float]? = nil, rows: Int, sequence: Int) {
        precondition(ids.count == rows * sequence && (lossMask?.count ?? ids.count) == ids.count)
        self.ids = ids
        var mask = lossMask ?? [Float](repeating: 1, count: ids.count)
        for r in 0..<rows where sequence > 0 { mask[r * sequence] = 0 }
        self.lossMask = mask
        self.rows = rows
        self.sequence = sequence
    }

    /// Loads `path` for `config`'s model: `.safetensors` (int64 `input_ids` [N, T], optional
    /// `loss_mask` [N, T]) or `.jsonl` (tokenized with `tokenizer`; see ``JSONLData``). Checks every
    /// id against the vocabulary and the length against the model's positions.
    public static func load(path: String, config: ModelConfig, tokenizer: () throws -> Tokenizer) throws -> TrainingData {
        let name = (path as NSString).lastPathComponent
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw TrainingError("data file \(path) does not exist")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        guard size > 0 else { throw TrainingError("data file \(name) is empty") }
        let data: TrainingData
        switch (path as NSString).pathExtension.lowercased() {
        case "safetensors":
            data = try SafeTensorsData.load(path: path)
        case "jsonl":
            data = try JSONLData.load(path: path, tokenizer: try tokenizer(), config: config)
        default:
            throw TrainingError("data file \(name): unknown format (use .safetensors with input_ids, or .jsonl)")
        }
        try data.validate(config: config, name: name)
        return data
    }

    /// Checks the rows against the model: non-empty, ids below the vocabulary size, sequences no longer
    /// than the model's positions, and at least one token to train on.
    public func validate(config: ModelConfig, name: String) throws {
        guard rows > 0, sequence > 0 else { throw TrainingError("data file \(name) is empty (no token rows)") }
        guard sequence >= 2 else {
            throw TrainingError("data file \(name): rows of \(sequence) token have nothing to predict (need at least 2 tokens)")
        }
        guard sequence <= config.maxPositions else {
            throw TrainingError("data file \(name): sequences of \(sequence) tokens are longer than the model's \(config.maxPositions) positions")
        }
        for (i, id) in ids.enumerated() where id < 0 || Int(id) >= config.vocabSize {
            throw TrainingError("data file \(name): token id \(id) at row \(i / sequence), column \(i % sequence) is outside the model's vocabulary of \(config.vocabSize)")
        }
        guard lossMask.contains(where: { $0 != 0 }) else {
            throw TrainingError("data file \(name): the loss mask selects no token to train on")
        }
    }

    /// Row `r`'s ids and mask.
    public func row(_ r: Int) -> (ids: ArraySlice<Int32>, mask: ArraySlice<Float>) {
        (ids[r * sequence..<(r + 1) * sequence], lossMask[r * sequence..<(r + 1) * sequence])
    }
}

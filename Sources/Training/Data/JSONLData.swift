import Foundation
import Models

/// Training rows from a `.jsonl` file, one JSON object a line (blank lines skipped):
///
/// - `{"text": …}` trains on every token;
/// - `{"prompt": …, "completion": …}` trains on the completion's tokens only (prompt and completion are
///   tokenized separately and concatenated).
///
/// Each row is tokenized with the model's `tokenizer.json` (no BOS is added) and ends with the model's
/// EOS token, which is trained on. Rows are right-padded to the longest row of the file with the pad
/// token (the EOS token when the model has none); padding is masked out of the loss, and since
/// attention is causal it changes nothing before it. A row longer than the model's positions is an
/// error, not truncated.
enum JSONLData {
    static func load(path: String, tokenizer: Tokenizer, config: ModelConfig) throws -> TrainingData {
        let name = (path as NSString).lastPathComponent
        guard let eos = config.eosTokenIds.first else {
            throw TrainingError("the model's config.json names no eos_token_id, which JSONL rows end with")
        }
        let pad = Int32(config.padTokenId ?? eos)
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw TrainingError("data file \(name) cannot be read as UTF-8 text: \(error.localizedDescription)")
        }
        var rows: [(ids: [Int32], mask: [Float])] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            let lineNumber = index + 1
            guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw TrainingError("data file \(name), line \(lineNumber): not a JSON object")
            }
            var ids: [Int32], mask: [Float]
            if let body = object["text"] as? String {
                ids = tokenizer.encode(body) + [Int32(eos)]
                mask = [Float](repeating: 1, count: ids.count)
            } else if let prompt = object["prompt"] as? String, let completion = object["completion"] as? String {
                let p = tokenizer.encode(prompt), c = tokenizer.encode(completion) + [Int32(eos)]
                ids = p + c
                mask = [Float](repeating: 0, count: p.count) + [Float](repeating: 1, count: c.count)
            } else {
                throw TrainingError("data file \(name), line \(lineNumber): a row needs a string \"text\", or a string \"prompt\" and \"completion\" (it has: \(object.keys.sorted().joined(separator: ", ")))")
            }
            guard ids.count <= config.maxPositions else {
                throw TrainingError("data file \(name), line \(lineNumber): \(ids.count) tokens are longer than the model's \(config.maxPositions) positions")
            }
            rows.append((ids, mask))
        }
        guard !rows.isEmpty else { throw TrainingError("data file \(name) is empty (no JSON rows)") }
        let sequence = rows.map(\.ids.count).max()!
        var ids: [Int32] = [], mask: [Float] = []
        ids.reserveCapacity(rows.count * sequence)
        for row in rows {
            let padding = sequence - row.ids.count
            ids += row.ids + [Int32](repeating: pad, count: padding)
            mask += row.mask + [Float](repeating: 0, count: padding)
        }
        return TrainingData(ids: ids, lossMask: mask, rows: rows.count, sequence: sequence)
    }
}

import Compute
import Foundation

/// A user dataset: a JSON Lines file with one `{"prompt": …, "answer": …}` object per line.
///
/// Rows in chat form, `{"messages": [{"role": …, "content": …}, …], "answer": …}`, need the model's chat
/// template to become a prompt; without one they are refused with the line number.
/// Without a separate eval file, every tenth row (the 10th, 20th, …) is held out for evaluation.
public struct JSONLDataset: PromptSource {
    public let name: String
    public let train: [RLExample]
    public let eval: [RLExample]
    /// True when the rows were `{"messages"}` conversations rendered with the model's chat template.
    public let chatFormatted: Bool

    /// Renders a conversation as the model's prompt (the model's chat template, with the generation prompt).
    public typealias ChatRenderer = @Sendable ([(role: String, content: String)]) throws -> String

    /// Loads `path`; `evalPath` (same format) replaces the held-out tenth.
    public init(path: String, evalPath: String? = nil, chat: ChatRenderer? = nil) throws {
        let rows = try Self.load(path, chat: chat)
        chatFormatted = chat != nil && Self.hasChatRows(path)
        if let evalPath {
            train = rows
            eval = try Self.load(evalPath, chat: chat)
        } else {
            var t: [RLExample] = [], e: [RLExample] = []
            for (i, r) in rows.enumerated() { if i % 10 == 9 { e.append(r) } else { t.append(r) } }
            if e.isEmpty && t.count >= 2 { e.append(t.removeLast()) }
            train = t
            eval = e
        }
        guard !train.isEmpty else { throw RLError("\(path): no training rows (a dataset needs at least 2 rows when 10% are held out)") }
        name = "data:" + (path as NSString).lastPathComponent
    }

    public init(name: String, train: [RLExample], eval: [RLExample], chatFormatted: Bool = false) {
        self.chatFormatted = chatFormatted
        self.name = name
        self.train = train
        self.eval = eval
    }

    /// Whether the file's rows are conversations (its first row has "messages" and no "prompt").
    static func hasChatRows(_ path: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8),
              let first = text.split(separator: "\n").first(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty }),
              let object = try? JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any] else { return false }
        return object["messages"] != nil && object["prompt"] == nil
    }

    /// The rows of a JSONL file; a line that is not a row with a string prompt and an answer is an error naming it.
    public static func load(_ path: String, chat: ChatRenderer? = nil) throws -> [RLExample] {
        guard let data = FileManager.default.contents(atPath: path) else { throw RLError("cannot read \(path)") }
        guard let text = String(data: data, encoding: .utf8) else { throw RLError("\(path) is not UTF-8 text") }
        var rows: [RLExample] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            let at = "\(path):\(n + 1)"
            guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw RLError("\(at): not a JSON object")
            }
            guard let answerValue = object["answer"] else { throw RLError("\(at): the row has no \"answer\"") }
            let answer: String
            switch answerValue {
            case let s as String: answer = s
            case let n as NSNumber: answer = n.stringValue
            default: throw RLError("\(at): \"answer\" must be a string or a number")
            }
            if let prompt = object["prompt"] {
                guard let p = prompt as? String else { throw RLError("\(at): \"prompt\" must be a string") }
                rows.append(RLExample(prompt: p, answer: answer))
            } else if let messages = object["messages"] {
                guard let list = messages as? [[String: Any]] else { throw RLError("\(at): \"messages\" must be a list of {\"role\", \"content\"} objects") }
                let turns: [(role: String, content: String)] = try list.map {
                    guard let role = $0["role"] as? String, let content = $0["content"] as? String else {
                        throw RLError("\(at): every message needs a string \"role\" and \"content\"")
                    }
                    return (role, content)
                }
                guard let chat else {
                    throw RLError("\(at): a \"messages\" row needs a chat template, and this model has none (use \"prompt\" rows)")
                }
                do { rows.append(RLExample(prompt: try chat(turns), answer: answer)) } catch {
                    throw RLError("\(at): the chat template failed: \(error)")
                }
            } else {
                throw RLError("\(at): the row has neither \"prompt\" nor \"messages\"")
            }
        }
        guard !rows.isEmpty else { throw RLError("\(path) has no rows") }
        return rows
    }

    public func trainExample(at index: Int, seed: UInt64) -> RLExample {
        // Epoch by epoch, each a seeded shuffle of the rows: a pure function of (index, seed).
        let epoch = index / train.count, position = index % train.count
        var order = Array(train.indices)
        var rng = SplitMix64(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return train[order[position]]
    }

    public func evalExamples(count: Int) -> [RLExample] { Array(eval.prefix(count)) }
}

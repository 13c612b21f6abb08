/// One prompt of a task with the answer its reward checks against.
public struct RLExample: Sendable, Codable, Equatable, Hashable {
    public var prompt: String
    public var answer: String
    public init(prompt: String, answer: String) {
        self.prompt = prompt
        self.answer = answer
    }
}

/// Where prompts come from: a stream of training prompts and a fixed held-out set for evaluation.
public protocol PromptSource: Sendable {
    /// A name for logs and the summary (`addition`, `data:FILE`).
    var name: String { get }
    /// The training prompt at position `index` of the stream, a pure function of (`index`, `seed`):
    /// a resumed run continues exactly where it stopped.
    func trainExample(at index: Int, seed: UInt64) -> RLExample
    /// The held-out prompts, never returned by `trainExample`.
    func evalExamples(count: Int) -> [RLExample]
    /// Whether the prompts were rendered by the model's chat template, which writes the special tokens
    /// itself: they are then tokenized without adding any (as vLLM's `chat`).
    var chatFormatted: Bool { get }
}

extension PromptSource {
    public var chatFormatted: Bool { false }
}

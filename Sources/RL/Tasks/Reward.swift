/// A reward: scores one completion of one prompt. Verifiable tasks score exact matches against the
/// example's answer; users bring their own checker as a closure of (prompt, completion).
public struct Reward: Sendable {
    private let score: @Sendable (RLExample, String) async throws -> Double

    /// A user's checker. The completion is the generated text cut at EOS and at the first stop string.
    public init(_ score: @escaping @Sendable (_ prompt: String, _ completion: String) async throws -> Double) {
        self.score = { example, completion in try await score(example.prompt, completion) }
    }

    private init(scoring score: @escaping @Sendable (RLExample, String) async throws -> Double) {
        self.score = score
    }

    /// A checker that also sees the example's reference answer.
    public static func withAnswer(_ score: @escaping @Sendable (RLExample, String) async throws -> Double) -> Reward {
        Reward(scoring: score)
    }

    /// 1 when the completion, stripped of surrounding whitespace, equals the answer; else 0.
    public static let exactMatch = Reward(scoring: { example, completion in
        CompletionText.isExactMatch(completion, answer: example.answer) ? 1 : 0
    })

    /// Scores a completion; a checker that throws or returns a non-finite value fails with a one-line
    /// error naming the prompt.
    public func callAsFunction(_ example: RLExample, _ completion: String) async throws -> Double {
        let r: Double
        do { r = try await score(example, completion) } catch {
            throw RLError("the reward function failed on prompt \(String(reflecting: String(example.prompt.prefix(80)))): \(error)")
        }
        guard r.isFinite else {
            throw RLError("the reward function returned \(r) on prompt \(String(reflecting: String(example.prompt.prefix(80))))")
        }
        return r
    }
}

/// What a completion's text is for scoring.
public enum CompletionText {
    /// `text` cut before the first occurrence of any stop string (EOS is cut by the caller, in tokens).
    public static func cut(_ text: String, stop: [String]) -> String {
        var end = text.endIndex
        for s in stop where !s.isEmpty {
            if let r = text.range(of: s), r.lowerBound < end { end = r.lowerBound }
        }
        return String(text[..<end])
    }

    /// The ids before the first end-of-sequence id (the engine includes EOS in its output).
    public static func untilEOS(_ ids: [Int32], eos: Set<Int32>) -> [Int32] {
        if let i = ids.firstIndex(where: { eos.contains($0) }) { return Array(ids[..<i]) }
        return ids
    }

    public static func isExactMatch(_ completion: String, answer: String) -> Bool {
        completion.trimmingCharacters(in: .whitespacesAndNewlines) == answer.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

import Foundation

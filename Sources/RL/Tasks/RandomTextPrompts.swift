import Compute
import Models

/// Prompts of about `tokens` tokens of random vocabulary, for benchmarks: the reward is whatever the
/// benchmark's closure says (the timing, not the learning, is measured).
public struct RandomTextPrompts: PromptSource {
    public let name = "random-text"
    let tokenizer: Tokenizer
    let tokens: Int

    public init(tokenizer: Tokenizer, tokens: Int) {
        self.tokenizer = tokenizer
        self.tokens = tokens
    }

    public func trainExample(at index: Int, seed: UInt64) -> RLExample {
        var rng = SplitMix64(seed: seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        // Ids past the special tokens; decoded and re-encoded, the count stays near `tokens`.
        let low = 4, count = max(tokenizer.vocabSize - low, 1)
        var ids = (0..<tokens).map { _ in Int32(low + Int(rng.next() % UInt64(count))) }
        var text = (try? tokenizer.decode(ids)) ?? ""
        // Trim until the prompt is at most `tokens` long (merges can only shorten it, never by much).
        while tokenizer.encode(text).count > tokens && ids.count > 1 {
            ids.removeLast()
            text = (try? tokenizer.decode(ids)) ?? ""
        }
        return RLExample(prompt: text, answer: "")
    }

    public func evalExamples(count: Int) -> [RLExample] { [] }
}

/// How to pick tokens, with vLLM's `SamplingParams` names and defaults.
public struct SamplingParams: Sendable, Codable, Equatable {
    /// New tokens to generate at most.
    public var maxTokens: Int
    /// Softmax temperature; 0 picks the most likely token (greedy).
    public var temperature: Float
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `topP` (1 = off).
    public var topP: Float
    /// Keep only the `topK` most likely tokens (0 or -1 = off).
    public var topK: Int
    /// Seed of the sampler. Same seed, same prompt, same weights → same tokens. Nil draws one.
    public var seed: UInt64?
    /// Completions per prompt.
    public var n: Int
    /// Keep generating past the end-of-sequence token.
    public var ignoreEOS: Bool
    /// Extra token ids that end a completion (included in its output, as EOS is).
    public var stopTokenIds: [Int32]

    public init(maxTokens: Int = 16, temperature: Float = 1.0, topP: Float = 1.0, topK: Int = -1,
                seed: UInt64? = nil, n: Int = 1, ignoreEOS: Bool = false, stopTokenIds: [Int32] = []) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
        self.n = n
        self.ignoreEOS = ignoreEOS
        self.stopTokenIds = stopTokenIds
    }

    public static let greedy = SamplingParams(temperature: 0)

    /// Rejects values vLLM rejects, with the same meaning.
    public func validate() throws(ModelError) {
        guard maxTokens >= 1 else { throw ModelError("max tokens must be ≥ 1, got \(maxTokens)") }
        guard temperature >= 0, temperature.isFinite else { throw ModelError("temperature must be ≥ 0, got \(temperature)") }
        guard topP > 0, topP <= 1 else { throw ModelError("top-p must be in (0, 1], got \(topP)") }
        guard topK >= -1 else { throw ModelError("top-k must be -1 (off), 0 (off) or ≥ 1, got \(topK)") }
        guard n >= 1 else { throw ModelError("n must be ≥ 1, got \(n)") }
    }
}

/// Why a completion ended.
public enum FinishReason: String, Sendable, Codable {
    /// It produced an end-of-sequence or stop token.
    case stop
    /// It reached `maxTokens` or the model's last position.
    case length
}

/// One generated completion: the new token ids and, for each, its log-probability under the model
/// (log-softmax of the raw logits, before temperature/top-k/top-p — vLLM's default "raw_logprobs").
public struct Completion: Sendable, Codable, Equatable {
    public var tokenIds: [Int32]
    public var logprobs: [Float]
    public var finishReason: FinishReason

    public init(tokenIds: [Int32], logprobs: [Float], finishReason: FinishReason) {
        self.tokenIds = tokenIds
        self.logprobs = logprobs
        self.finishReason = finishReason
    }
}

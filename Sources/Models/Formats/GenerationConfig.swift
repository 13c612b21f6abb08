import Foundation

/// The `generation_config.json` of a model directory: its end-of-sequence ids and the sampling
/// defaults its authors chose (Qwen2.5 ships `temperature 0.7, top_p 0.8, top_k 20` and two EOS ids).
///
/// Used as vLLM does with `generation_config="auto"`: every `eos_token_id` listed here ends a
/// completion, in addition to `config.json`'s; and the sampling fields that differ from transformers'
/// `GenerationConfig` defaults (`to_diff_dict`) become the defaults for requests that do not set
/// them. Fields we do not sample with (`repetition_penalty`, `min_p`, `do_sample`) are ignored.
public struct GenerationConfig: Sendable, Codable, Equatable {
    public static let fileName = "generation_config.json"

    /// `eos_token_id`: one id or a list.
    public var eosTokenIds: [Int]
    public var temperature: Float?
    public var topP: Float?
    public var topK: Int?
    /// `max_new_tokens` (vLLM's `max_tokens`).
    public var maxNewTokens: Int?

    public init(eosTokenIds: [Int] = [], temperature: Float? = nil, topP: Float? = nil, topK: Int? = nil, maxNewTokens: Int? = nil) {
        self.eosTokenIds = eosTokenIds
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.maxNewTokens = maxNewTokens
    }

    /// Reads `directory/generation_config.json`; nil when there is none.
    public static func load(directory: String) throws(ModelConfigError) -> GenerationConfig? {
        let path = directory + "/" + fileName
        guard FileIO.isRegularFile(path) else { return nil }
        let bytes: [UInt8]
        do {
            bytes = try FileIO.readFile(path)
        } catch {
            throw ModelConfigError("\(error)")
        }
        do {
            return try GenerationConfig(json: bytes)
        } catch {
            throw ModelConfigError("\(path): \(error.message)")
        }
    }

    public init(json bytes: [UInt8]) throws(ModelConfigError) {
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes)
        } catch {
            throw ModelConfigError("not valid JSON: \(error)")
        }
        guard json.objectMembers != nil else { throw ModelConfigError("not a JSON object") }
        func value(_ key: String) -> JSONValue? {
            guard let v = json[key], !v.isNull else { return nil }
            return v
        }
        func number(_ key: String) throws(ModelConfigError) -> Double? {
            guard let v = value(key) else { return nil }
            guard let d = v.doubleValue, d.isFinite else { throw ModelConfigError("field '\(key)' must be a number, not \(v.serialized())") }
            return d
        }
        func integer(_ key: String) throws(ModelConfigError) -> Int? {
            guard let v = value(key) else { return nil }
            guard let i = v.intValue else { throw ModelConfigError("field '\(key)' must be an integer, not \(v.serialized())") }
            return i
        }
        var eos: [Int] = []
        if let v = value("eos_token_id") {
            if let i = v.intValue {
                eos = [i]
            } else if let list = v.arrayValue, list.allSatisfy({ $0.intValue != nil }) {
                eos = list.compactMap(\.intValue)
            } else {
                throw ModelConfigError("field 'eos_token_id' must be an integer or a list of integers, not \(v.serialized())")
            }
        }
        self.init(eosTokenIds: eos, temperature: try number("temperature").map(Float.init), topP: try number("top_p").map(Float.init),
                  topK: try integer("top_k"), maxNewTokens: try integer("max_new_tokens"))
        if let t = temperature, t < 0 { throw ModelConfigError("temperature must be ≥ 0, not \(t)") }
        if let p = topP, !(p > 0 && p <= 1) { throw ModelConfigError("top_p must be in (0, 1], not \(p)") }
        if let k = topK, k < 0 { throw ModelConfigError("top_k must be ≥ 0, not \(k)") }
        if let m = maxNewTokens, m < 1 { throw ModelConfigError("max_new_tokens must be ≥ 1, not \(m)") }
    }

    /// `params` with this file's sampling fields where they differ from transformers'
    /// `GenerationConfig()` defaults (temperature 1, top_p 1, top_k 50, max_new_tokens unset) — what
    /// vLLM's `get_diff_sampling_param` applies. A listed `top_k: 50` is therefore not applied.
    public func samplingDefaults(over params: SamplingParams = SamplingParams()) -> SamplingParams {
        var p = params
        if let t = temperature, t != 1 { p.temperature = t }
        if let t = topP, t != 1 { p.topP = t }
        if let k = topK, k != 50 { p.topK = k == 0 ? -1 : k }
        if let m = maxNewTokens { p.maxTokens = m }
        return p
    }
}

import Compute
import Foundation

/// The RoPE variant of a `config.json` (`rope_parameters` in transformers 5, `rope_scaling` with a
/// top-level `rope_theta` before), and the inverse frequencies it gives, computed step by step as
/// transformers' `modeling_rope_utils.py` does (f32 tensors, Python-double scalars).
public enum RopeScaling: Sendable, Codable, Equatable {
    /// Plain RoPE.
    case none
    /// `linear`: every inverse frequency divided by `factor`.
    case linear(factor: Double)
    /// `dynamic` NTK: the base grows with the sequence length once it passes `max_position_embeddings`.
    case dynamic(factor: Double)
    /// `llama3` (Llama 3.1/3.2): low frequencies divided by `factor`, high ones kept, a smooth ramp
    /// between.
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Int)
    /// `yarn` (long-context Qwen2.5, DeepSeek): interpolation/extrapolation blended by a linear ramp over
    /// the pair index, and cos/sin scaled by the attention factor.
    case yarn(Yarn)

    public struct Yarn: Sendable, Codable, Equatable {
        /// The explicit `factor` (transformers 5 uses it even when `max_position_embeddings /
        /// original_max_position_embeddings` says otherwise; it derives the ratio only when `factor` is null).
        public var factor: Double
        public var originalMaxPositions: Int
        public var attentionFactor: Double?
        public var betaFast: Double
        public var betaSlow: Double
        public var mscale: Double?
        public var mscaleAllDim: Double?
        public var truncate: Bool

        public init(factor: Double, originalMaxPositions: Int, attentionFactor: Double? = nil, betaFast: Double = 32,
                    betaSlow: Double = 1, mscale: Double? = nil, mscaleAllDim: Double? = nil, truncate: Bool = true) {
            self.factor = factor
            self.originalMaxPositions = originalMaxPositions
            self.attentionFactor = attentionFactor
            self.betaFast = betaFast
            self.betaSlow = betaSlow
            self.mscale = mscale
            self.mscaleAllDim = mscaleAllDim
            self.truncate = truncate
        }
    }

    /// The `rope_type` name.
    public var typeName: String {
        switch self {
        case .none: "default"
        case .linear: "linear"
        case .dynamic: "dynamic"
        case .llama3: "llama3"
        case .yarn: "yarn"
        }
    }

    /// Whether the frequencies depend on the sequence length (dynamic NTK).
    public var dependsOnSequenceLength: Bool {
        if case .dynamic = self { return true }
        return false
    }

    /// The rotary embedding for a head dimension, base and `max_position_embeddings`; `sequenceLength`
    /// (the largest position of the pass + 1) matters only for dynamic NTK, as in transformers'
    /// `dynamic_rope_update` (default frequencies until the length passes `max_position_embeddings`).
    public func embedding(headDim: Int, theta: Float, maxPositions: Int, sequenceLength: Int = 0) -> RotaryEmbedding {
        let dim = headDim
        let exponents = (0..<dim / 2).map { Float(2 * $0) / Float(dim) }
        switch self {
        case .none:
            return RotaryEmbedding(theta: theta, headDim: headDim)
        case .linear(let factor):
            let inv = RotaryEmbedding.defaultInverseFrequencies(theta: theta, headDim: dim)
            return RotaryEmbedding(inverseFrequencies: inv.map { $0 / Float(factor) })
        case .dynamic(let factor):
            // seq_len is a tensor there, so the new base is an f32 computation.
            let seqLen = Float(max(sequenceLength, maxPositions))
            let f = Float(factor)
            let scaled = (f * seqLen / Float(maxPositions)) - (f - 1)
            let base = Float(Double(theta)) * powf(scaled, Float(dim) / Float(dim - 2))
            return RotaryEmbedding(inverseFrequencies: exponents.map { 1 / powf(base, $0) })
        case .llama3(let factor, let low, let high, let original):
            let inv = RotaryEmbedding.defaultInverseFrequencies(theta: theta, headDim: dim)
            let lowFreqWavelen = Float(Double(original) / low)
            let highFreqWavelen = Float(Double(original) / high)
            let f = Float(factor)
            let twoPi = Float(2 * Double.pi)
            let out = inv.map { invFreq -> Float in
                // `2π / inv_freq` is `inv_freq.reciprocal() * 2π` in torch.
                let wavelen = (1 / invFreq) * twoPi
                let scaled = wavelen > lowFreqWavelen ? invFreq / f : invFreq
                let smooth = ((1 / wavelen) * Float(original) - Float(low)) / Float(high - low)
                let smoothed = (1 - smooth) * scaled / f + smooth * scaled
                let medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen)
                return medium ? smoothed : scaled
            }
            return RotaryEmbedding(inverseFrequencies: out)
        case .yarn(let y):
            func mscaleOf(_ scale: Double, _ m: Double = 1) -> Double { scale <= 1 ? 1 : 0.1 * m * log(scale) + 1 }
            var attention = y.attentionFactor
            if attention == nil {
                if let m = y.mscale, let all = y.mscaleAllDim, m != 0, all != 0 {
                    attention = mscaleOf(y.factor, m) / mscaleOf(y.factor, all)
                } else {
                    attention = mscaleOf(y.factor)
                }
            }
            func correctionDim(_ rotations: Double) -> Double {
                (Double(dim) * log(Double(y.originalMaxPositions) / (rotations * 2 * Double.pi))) / (2 * log(Double(theta)))
            }
            var low = correctionDim(y.betaFast)
            var high = correctionDim(y.betaSlow)
            if y.truncate {
                low = low.rounded(.down)
                high = high.rounded(.up)
            }
            low = max(low, 0)
            high = min(high, Double(dim - 1))
            if low == high { high += 0.001 }
            let posFreqs = exponents.map { Float(pow(Double(theta), Double($0))) }
            let f = Float(y.factor)
            let out = posFreqs.enumerated().map { i, p -> Float in
                let extrapolation = 1 / p
                let interpolation = 1 / (f * p)
                let ramp = min(max((Float(i) - Float(low)) / Float(high - low), 0), 1)
                let extrapolationFactor = 1 - ramp
                return interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor
            }
            return RotaryEmbedding(inverseFrequencies: out, attentionScaling: Float(attention!))
        }
    }
}

extension RopeScaling {
    /// Reads the variant from `rope_parameters` (transformers 5) or `rope_scaling` (4: `type` or
    /// `rope_type`); absent or `default` is plain RoPE. Unknown variants are refused: they would
    /// silently give other logits.
    static func parse(config json: JSONValue, maxPositions: Int) throws(ModelConfigError) -> RopeScaling {
        var parameters: JSONValue? = nil
        var field = ""
        for key in ["rope_parameters", "rope_scaling"] {
            guard let p = json[key], !p.isNull else { continue }
            guard p.objectMembers != nil else { throw ModelConfigError("field '\(key)' must be an object") }
            parameters = p
            field = key
            break
        }
        guard let p = parameters else { return .none }
        let type = p["rope_type"]?.stringValue ?? p["type"]?.stringValue ?? "default"

        func number(_ key: String) throws(ModelConfigError) -> Double? {
            guard let v = p[key], !v.isNull else { return nil }
            guard let d = v.doubleValue, d.isFinite else {
                throw ModelConfigError("field '\(field).\(key)' must be a number, not \(v.serialized())")
            }
            return d
        }
        func required(_ key: String) throws(ModelConfigError) -> Double {
            guard let d = try number(key) else { throw ModelConfigError("\(field) of rope_type '\(type)' needs '\(key)'") }
            return d
        }
        func positive(_ key: String, _ value: Double) throws(ModelConfigError) -> Double {
            guard value > 0 else { throw ModelConfigError("\(field).\(key) must be positive, not \(value)") }
            return value
        }
        func positions(_ key: String) throws(ModelConfigError) -> Int? {
            guard let d = try number(key) else { return nil }
            guard d.rounded() == d, d > 0, d < 1e15 else {
                throw ModelConfigError("\(field).\(key) must be a positive integer, not \(d)")
            }
            return Int(d)
        }
        if let partial = try number("partial_rotary_factor"), partial != 1 {
            throw ModelConfigError("\(field).partial_rotary_factor \(partial) is not supported (only 1)")
        }

        switch type {
        case "default":
            return .none
        case "linear":
            return .linear(factor: try positive("factor", try required("factor")))
        case "dynamic":
            return .dynamic(factor: try positive("factor", try required("factor")))
        case "llama3":
            let low = try positive("low_freq_factor", try required("low_freq_factor"))
            let high = try positive("high_freq_factor", try required("high_freq_factor"))
            guard high > low else {
                throw ModelConfigError("\(field).high_freq_factor \(high) must be larger than low_freq_factor \(low)")
            }
            guard let original = try positions("original_max_position_embeddings") else {
                throw ModelConfigError("\(field) of rope_type 'llama3' needs 'original_max_position_embeddings'")
            }
            return .llama3(factor: try positive("factor", try required("factor")), lowFreqFactor: low,
                           highFreqFactor: high, originalMaxPositions: original)
        case "yarn":
            let original = try positions("original_max_position_embeddings") ?? maxPositions
            let factor = try number("factor") ?? Double(maxPositions) / Double(original)
            var truncate = true
            if let t = p["truncate"], !t.isNull {
                guard let b = t.boolValue else { throw ModelConfigError("field '\(field).truncate' must be true or false") }
                truncate = b
            }
            // `beta_fast or 32`: a zero means the default too.
            let betaFast = try number("beta_fast").flatMap { $0 == 0 ? nil : $0 } ?? 32
            let betaSlow = try number("beta_slow").flatMap { $0 == 0 ? nil : $0 } ?? 1
            return .yarn(Yarn(factor: try positive("factor", factor), originalMaxPositions: original,
                              attentionFactor: try number("attention_factor"), betaFast: betaFast, betaSlow: betaSlow,
                              mscale: try number("mscale"), mscaleAllDim: try number("mscale_all_dim"), truncate: truncate))
        default:
            throw ModelConfigError("unsupported rope_type '\(type)' in '\(field)' (supported: default, linear, dynamic, llama3, yarn)")
        }
    }

    /// The variant's fields for `rope_parameters` / `rope_scaling`.
    func jsonFields() -> [(key: String, value: JSONValue)] {
        func n(_ d: Double) -> JSONValue { .double(d) }
        switch self {
        case .none: return [("rope_type", .string("default"))]
        case .linear(let f), .dynamic(let f): return [("factor", n(f)), ("rope_type", .string(typeName))]
        case .llama3(let f, let low, let high, let original):
            return [("factor", n(f)), ("high_freq_factor", n(high)), ("low_freq_factor", n(low)),
                    ("original_max_position_embeddings", .int(original)), ("rope_type", .string("llama3"))]
        case .yarn(let y):
            var fields: [(key: String, value: JSONValue)] = [("factor", n(y.factor))]
            if let a = y.attentionFactor { fields.append(("attention_factor", n(a))) }
            fields.append(("beta_fast", n(y.betaFast)))
            fields.append(("beta_slow", n(y.betaSlow)))
            if let m = y.mscale { fields.append(("mscale", n(m))) }
            if let m = y.mscaleAllDim { fields.append(("mscale_all_dim", n(m))) }
            fields.append(("original_max_position_embeddings", .int(y.originalMaxPositions)))
            fields.append(("rope_type", .string("yarn")))
            fields.append(("truncate", .bool(y.truncate)))
            return fields
        }
    }
}

extension ModelConfig {
    /// The rotary parameters of this model for a pass over `sequenceLength` positions (only dynamic
    /// NTK scaling depends on it; nil or 0 means "not known", as for a model built once for any pass).
    public func rotaryEmbedding(sequenceLength: Int?) -> RotaryEmbedding {
        ropeScaling.embedding(headDim: headDim, theta: ropeTheta, maxPositions: maxPositions, sequenceLength: sequenceLength ?? 0)
    }
}

import Compute
import Foundation

/// A `config.json` that cannot be used; one line naming the file or field.
public struct ModelConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The `config.json` of a Hugging Face causal LM of a supported architecture, with transformers'
/// defaults applied for absent fields (`LlamaConfig`, `Qwen2Config`, `OPTConfig`).
///
/// Fields that only one architecture has are present for all, with the value that describes the
/// others (e.g. `attentionBias` is true for Qwen2, whose q/k/v projections always have biases).
/// The synthesized `Codable` uses the Swift names; `init(json:)` and `encodedJSON()` speak the
/// Hugging Face format.
public struct ModelConfig: Sendable, Codable, Equatable {
    public enum Architecture: String, Sendable, Codable, CaseIterable {
        case opt, llama, qwen2

        /// The `architectures` entry transformers uses for the causal LM class.
        public var causalLMClassName: String {
            switch self {
            case .opt: "OPTForCausalLM"
            case .llama: "LlamaForCausalLM"
            case .qwen2: "Qwen2ForCausalLM"
            }
        }
    }

    public var architecture: Architecture
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numLayers: Int
    public var numHeads: Int
    /// Key/value heads (grouped-query attention); equal to `numHeads` for OPT.
    public var numKVHeads: Int
    public var headDim: Int
    /// Width of the MLP (`intermediate_size`; OPT's `ffn_dim`).
    public var intermediateSize: Int
    /// `max_position_embeddings` (OPT's learned position table has 2 more rows, as in transformers).
    public var maxPositions: Int
    public var tieWordEmbeddings: Bool
    public var bosTokenId: Int?
    /// `eos_token_id`, which may be one id or a list.
    public var eosTokenIds: [Int]
    public var padTokenId: Int?
    /// `hidden_act` (OPT: `activation_function`).
    public var hiddenAct: Activation
    /// RMS norm epsilon (Llama, Qwen2).
    public var rmsNormEps: Float
    /// Layer norm epsilon (OPT; fixed at 1e-5 in transformers).
    public var layerNormEps: Float
    /// Rotary base (Llama, Qwen2).
    public var ropeTheta: Float
    /// The RoPE variant (`rope_parameters` / `rope_scaling`): plain, linear, dynamic NTK, Llama 3 or YaRN.
    public var ropeScaling: RopeScaling
    /// Biases on the q/k/v (and, for Llama, o) projections. Llama: `attention_bias`; Qwen2: always
    /// true for q/k/v and false for o; OPT: `enable_bias`.
    public var attentionBias: Bool
    /// Biases on the MLP projections (Llama `mlp_bias`; OPT `enable_bias`).
    public var mlpBias: Bool
    /// OPT: pre-norm (true for every OPT size but 350m).
    public var doLayerNormBefore: Bool
    /// OPT: embedding width; differs from `hiddenSize` only with project_in/project_out (opt-350m).
    public var wordEmbedProjDim: Int
    /// OPT: biases on all linear layers.
    public var enableBias: Bool
    /// OPT: layer norms with weight and bias.
    public var layerNormElementwiseAffine: Bool
    /// OPT: `_remove_final_layer_norm` (old checkpoints without the final layer norm).
    public var removeFinalLayerNorm: Bool
    /// The dtype the weights were saved in (`torch_dtype`, or `dtype` in transformers 5).
    public var torchDtype: DType?
    /// `generation_config.json` beside `config.json` (read by `load(directory:)`), if any.
    public var generation: GenerationConfig?

    /// Every id that ends a completion: `config.json`'s `eos_token_id` and `generation_config.json`'s
    /// (vLLM stops on both; Qwen2.5 lists `<|im_end|>` and `<|endoftext|>` there).
    public var allEOSTokenIds: [Int] {
        var ids = eosTokenIds
        for id in generation?.eosTokenIds ?? [] where !ids.contains(id) { ids.append(id) }
        return ids
    }

    /// A configuration with transformers' defaults for `architecture` and the given dimensions.
    public init(
        architecture: Architecture, vocabSize: Int, hiddenSize: Int, numLayers: Int, numHeads: Int,
        numKVHeads: Int? = nil, headDim: Int? = nil, intermediateSize: Int, maxPositions: Int,
        torchDtype: DType? = nil
    ) {
        self.architecture = architecture
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.numLayers = numLayers
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads ?? numHeads
        self.headDim = headDim ?? hiddenSize / max(numHeads, 1)
        self.intermediateSize = intermediateSize
        self.maxPositions = maxPositions
        self.torchDtype = torchDtype
        self.layerNormEps = 1e-5
        self.rmsNormEps = 1e-6
        self.ropeTheta = 10000
        self.ropeScaling = .none
        self.doLayerNormBefore = true
        self.wordEmbedProjDim = hiddenSize
        self.enableBias = true
        self.layerNormElementwiseAffine = true
        self.removeFinalLayerNorm = false
        switch architecture {
        case .opt:
            tieWordEmbeddings = true
            bosTokenId = 2
            eosTokenIds = [2]
            padTokenId = 1
            hiddenAct = .relu
            attentionBias = true
            mlpBias = true
        case .llama:
            tieWordEmbeddings = false
            bosTokenId = 1
            eosTokenIds = [2]
            padTokenId = nil
            hiddenAct = .silu
            attentionBias = false
            mlpBias = false
        case .qwen2:
            tieWordEmbeddings = false
            bosTokenId = nil
            eosTokenIds = []
            padTokenId = nil
            hiddenAct = .silu
            attentionBias = true
            mlpBias = false
        }
    }

    /// Reads `directory/config.json`.
    public static func load(directory: String) throws -> ModelConfig {
        let path = directory + "/config.json"
        let bytes: [UInt8]
        do {
            bytes = try FileIO.readFile(path)
        } catch {
            throw ModelConfigError("\(error)")
        }
        var config: ModelConfig
        do {
            config = try ModelConfig(json: bytes)
        } catch {
            throw ModelConfigError("\(path): \(error.message)")
        }
        config.generation = try GenerationConfig.load(directory: directory)
        for id in config.generation?.eosTokenIds ?? [] where id < 0 || id >= config.vocabSize {
            throw ModelConfigError("\(directory)/\(GenerationConfig.fileName): eos_token_id \(id) is outside the vocabulary of \(config.vocabSize)")
        }
        return config
    }

    public init(json: Data) throws {
        try self.init(json: [UInt8](json))
    }

    /// Parses the Hugging Face `config.json` format.
    public init(json bytes: [UInt8]) throws(ModelConfigError) {
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes)
        } catch {
            throw ModelConfigError("not valid JSON: \(error)")
        }
        guard json.objectMembers != nil else { throw ModelConfigError("not a JSON object") }
        let c = ConfigReader(json: json)

        guard let modelType = try c.string("model_type") else { throw ModelConfigError("missing required field 'model_type'") }
        guard let architecture = Architecture(rawValue: modelType) else {
            throw ModelConfigError("unsupported model_type '\(modelType)' (supported: opt, llama, qwen2)")
        }
        let hidden = try c.requiredInt("hidden_size")
        let heads = try c.requiredInt("num_attention_heads")
        self.init(
            architecture: architecture,
            vocabSize: try c.requiredInt("vocab_size"),
            hiddenSize: hidden,
            numLayers: try c.requiredInt("num_hidden_layers"),
            numHeads: heads,
            intermediateSize: try c.requiredInt(architecture == .opt ? "ffn_dim" : "intermediate_size"),
            maxPositions: try c.int("max_position_embeddings") ?? (architecture == .qwen2 ? 32768 : 2048))

        torchDtype = try c.dtype()
        tieWordEmbeddings = try c.bool("tie_word_embeddings") ?? tieWordEmbeddings
        if c.has("bos_token_id") { bosTokenId = try c.int("bos_token_id") }
        if c.has("pad_token_id") { padTokenId = try c.int("pad_token_id") }
        if c.has("eos_token_id") { eosTokenIds = try c.intOrIntList("eos_token_id") }
        let actField = architecture == .opt ? "activation_function" : "hidden_act"
        if let name = try c.string(actField) {
            guard let act = Self.activation(hfName: name) else {
                throw ModelConfigError("unsupported \(actField) '\(name)' (supported: relu, gelu, gelu_new, gelu_pytorch_tanh, silu, swish)")
            }
            hiddenAct = act
        }

        switch architecture {
        case .opt:
            numKVHeads = heads
            headDim = hidden / max(heads, 1)
            doLayerNormBefore = try c.bool("do_layer_norm_before") ?? true
            wordEmbedProjDim = try c.int("word_embed_proj_dim") ?? hidden
            enableBias = try c.bool("enable_bias") ?? true
            layerNormElementwiseAffine = try c.bool("layer_norm_elementwise_affine") ?? true
            removeFinalLayerNorm = try c.bool("_remove_final_layer_norm") ?? false
            attentionBias = enableBias
            mlpBias = enableBias
        case .llama, .qwen2:
            // Without an explicit head_dim, transformers splits hidden_size evenly over the heads.
            if try c.int("head_dim") == nil, heads > 0, hidden % heads != 0 {
                throw ModelConfigError("hidden_size \(hidden) is not a multiple of num_attention_heads \(heads) (and there is no head_dim)")
            }
            // Null means "as many as the query heads"; absent is transformers' default, which is
            // `None` (the same) for Llama but 32 for Qwen2.
            let kvDefault = architecture == .qwen2 && !c.has("num_key_value_heads") ? 32 : heads
            numKVHeads = try c.int("num_key_value_heads") ?? kvDefault
            headDim = try c.int("head_dim") ?? hidden / max(heads, 1)
            rmsNormEps = try c.float("rms_norm_eps") ?? 1e-6
            ropeTheta = try c.ropeTheta()
            ropeScaling = try RopeScaling.parse(config: json, maxPositions: maxPositions)
            if architecture == .llama {
                attentionBias = try c.bool("attention_bias") ?? false
                mlpBias = try c.bool("mlp_bias") ?? false
            } else if try c.bool("use_sliding_window") == true {
                throw ModelConfigError("use_sliding_window is not supported")
            }
        }
        // Read by no supported architecture (OPT's is fixed at 1e-5), but a value that cannot be an
        // epsilon means a broken file.
        if let eps = try c.float("layer_norm_eps"), !(eps > 0 && eps.isFinite) {
            throw ModelConfigError("layer_norm_eps must be a positive number, not \(eps)")
        }
        try validate()
    }

    /// Checks that the dimensions are usable together.
    public func validate() throws(ModelConfigError) {
        for (name, value) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("num_hidden_layers", numLayers),
                              ("num_attention_heads", numHeads), ("num_key_value_heads", numKVHeads), ("head_dim", headDim),
                              ("intermediate_size", intermediateSize), ("max_position_embeddings", maxPositions),
                              ("word_embed_proj_dim", wordEmbedProjDim)] where value <= 0 {
            throw ModelConfigError("\(name) must be positive, not \(value)")
        }
        // Every parameter's element count must be a representable size (a huge config must fail
        // here, not trap in a multiplication later).
        let attentionWidth = numHeads.multipliedReportingOverflow(by: headDim)
        for (name, a, b) in [("vocab_size × hidden_size", vocabSize, hiddenSize),
                             ("intermediate_size × hidden_size", intermediateSize, hiddenSize),
                             ("max_position_embeddings × hidden_size", maxPositions, hiddenSize),
                             ("num_attention_heads × head_dim × hidden_size", attentionWidth.overflow ? Int.max : attentionWidth.partialValue, hiddenSize)] {
            let (product, overflow) = a.multipliedReportingOverflow(by: b)
            guard !overflow, product <= 1 << 48 else {
                throw ModelConfigError("\(name) (\(a) × \(b)) is too large for a parameter tensor")
            }
        }
        for (name, value) in [("rms_norm_eps", rmsNormEps), ("layer_norm_eps", layerNormEps)] where !(value > 0 && value.isFinite) {
            throw ModelConfigError("\(name) must be a positive number, not \(value)")
        }
        if architecture != .opt, !(ropeTheta > 0 && ropeTheta.isFinite) {
            throw ModelConfigError("rope_theta must be a positive number, not \(ropeTheta)")
        }
        guard numHeads % numKVHeads == 0 else {
            throw ModelConfigError("num_attention_heads \(numHeads) is not a multiple of num_key_value_heads \(numKVHeads)")
        }
        if architecture == .opt, hiddenSize % numHeads != 0 {
            throw ModelConfigError("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numHeads)")
        }
        guard headDim % 2 == 0 || architecture == .opt else {
            throw ModelConfigError("head_dim \(headDim) must be even for rotary embeddings")
        }
        for (name, id) in [("bos_token_id", bosTokenId), ("pad_token_id", padTokenId)] + eosTokenIds.map({ ("eos_token_id", $0) }) {
            if let id, id < 0 || id >= vocabSize {
                throw ModelConfigError("\(name) \(id) is outside the vocabulary of \(vocabSize)")
            }
        }
    }

    static func activation(hfName: String) -> Activation? {
        switch hfName {
        case "relu": .relu
        case "gelu": .gelu
        case "gelu_new", "gelu_pytorch_tanh": .geluTanh
        case "silu", "swish": .silu
        default: nil
        }
    }

    static func hfName(_ activation: Activation) -> String {
        switch activation {
        case .relu: "relu"
        case .gelu: "gelu"
        case .geluTanh: "gelu_pytorch_tanh"
        case .silu: "silu"
        }
    }

    static func hfName(_ dtype: DType) -> String {
        switch dtype {
        case .f32: "float32"
        case .f16: "float16"
        case .bf16: "bfloat16"
        case .i32: "int32"
        case .i64: "int64"
        case .u8: "uint8"
        }
    }

    /// The configuration as a Hugging Face `config.json` (keys sorted, two-space indent, as
    /// transformers writes it) that transformers can load.
    public func encodedJSON() -> Data {
        func number(_ f: Float) -> JSONValue { .double(Double("\(f)") ?? Double(f)) }
        func optional(_ i: Int?) -> JSONValue { i.map { .int($0) } ?? .null }
        var fields: [String: JSONValue] = [
            "architectures": .array([.string(architecture.causalLMClassName)]),
            "model_type": .string(architecture.rawValue),
            "vocab_size": .int(vocabSize),
            "hidden_size": .int(hiddenSize),
            "num_hidden_layers": .int(numLayers),
            "num_attention_heads": .int(numHeads),
            "max_position_embeddings": .int(maxPositions),
            "tie_word_embeddings": .bool(tieWordEmbeddings),
            "bos_token_id": optional(bosTokenId),
            "eos_token_id": eosTokenIds.count == 1 ? .int(eosTokenIds[0]) : .array(eosTokenIds.map { .int($0) }),
            "pad_token_id": optional(padTokenId),
            "use_cache": .bool(true),
        ]
        if let torchDtype { fields["torch_dtype"] = .string(Self.hfName(torchDtype)) }
        switch architecture {
        case .opt:
            fields["ffn_dim"] = .int(intermediateSize)
            fields["activation_function"] = .string(Self.hfName(hiddenAct))
            fields["do_layer_norm_before"] = .bool(doLayerNormBefore)
            fields["word_embed_proj_dim"] = .int(wordEmbedProjDim)
            fields["enable_bias"] = .bool(enableBias)
            fields["layer_norm_elementwise_affine"] = .bool(layerNormElementwiseAffine)
            fields["_remove_final_layer_norm"] = .bool(removeFinalLayerNorm)
            fields["dropout"] = .double(0)
            fields["attention_dropout"] = .double(0)
            fields["layerdrop"] = .double(0)
        case .llama, .qwen2:
            fields["intermediate_size"] = .int(intermediateSize)
            fields["num_key_value_heads"] = .int(numKVHeads)
            fields["head_dim"] = .int(headDim)
            fields["hidden_act"] = .string(Self.hfName(hiddenAct))
            fields["rms_norm_eps"] = number(rmsNormEps)
            // transformers 4 reads rope_theta; 5 reads rope_parameters (and converts rope_theta).
            fields["rope_theta"] = number(ropeTheta)
            var rope = ropeScaling.jsonFields()
            rope.append(("rope_theta", number(ropeTheta)))
            fields["rope_parameters"] = .object(rope.sorted { $0.key < $1.key })
            if ropeScaling != .none { fields["rope_scaling"] = .object(ropeScaling.jsonFields()) }
            fields["attention_dropout"] = .double(0)
            if architecture == .llama {
                fields["attention_bias"] = .bool(attentionBias)
                fields["mlp_bias"] = .bool(mlpBias)
            } else {
                fields["use_sliding_window"] = .bool(false)
                fields["sliding_window"] = .null
                fields["max_window_layers"] = .int(numLayers)
            }
        }
        let json = JSONValue.object(fields.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        return Data((json.serialized(indent: 2) + "\n").utf8)
    }
}

/// Typed access to config fields, with errors that name the field. `null` reads as absent.
private struct ConfigReader {
    let json: JSONValue

    func has(_ key: String) -> Bool { json[key] != nil }

    private func value(_ key: String) -> JSONValue? {
        guard let v = json[key], !v.isNull else { return nil }
        return v
    }

    func int(_ key: String) throws(ModelConfigError) -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.intValue else { throw ModelConfigError("field '\(key)' must be an integer, not \(v.serialized())") }
        return i
    }

    func requiredInt(_ key: String) throws(ModelConfigError) -> Int {
        guard let i = try int(key) else { throw ModelConfigError("missing required field '\(key)'") }
        return i
    }

    func string(_ key: String) throws(ModelConfigError) -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else { throw ModelConfigError("field '\(key)' must be a string, not \(v.serialized())") }
        return s
    }

    func bool(_ key: String) throws(ModelConfigError) -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.boolValue else { throw ModelConfigError("field '\(key)' must be true or false, not \(v.serialized())") }
        return b
    }

    func float(_ key: String, in object: JSONValue? = nil) throws(ModelConfigError) -> Float? {
        guard let v = (object ?? json)[key], !v.isNull else { return nil }
        guard let d = v.doubleValue else { throw ModelConfigError("field '\(key)' must be a number, not \(v.serialized())") }
        return Float(d)
    }

    func intOrIntList(_ key: String) throws(ModelConfigError) -> [Int] {
        guard let v = value(key) else { return [] }
        if let i = v.intValue { return [i] }
        if let list = v.arrayValue {
            var out: [Int] = []
            for element in list {
                guard let i = element.intValue else { throw ModelConfigError("field '\(key)' must be an integer or a list of integers") }
                out.append(i)
            }
            return out
        }
        throw ModelConfigError("field '\(key)' must be an integer or a list of integers, not \(v.serialized())")
    }

    /// `torch_dtype` (transformers 4) or `dtype` (5); `auto` means unknown.
    func dtype() throws(ModelConfigError) -> DType? {
        for key in ["torch_dtype", "dtype"] {
            guard let name = try string(key) else { continue }
            if name == "auto" { return nil }
            guard let dtype = DType(name: name), dtype.isFloatingPoint else {
                throw ModelConfigError("unsupported \(key) '\(name)' (supported: float32, float16, bfloat16)")
            }
            return dtype
        }
        return nil
    }

    /// `rope_theta` (transformers 4) or `rope_parameters.rope_theta` (5); the variant is read by
    /// `RopeScaling.parse`.
    func ropeTheta() throws(ModelConfigError) -> Float {
        if let theta = try float("rope_theta") { return theta }
        if let p = value("rope_parameters"), p.objectMembers != nil, let theta = try float("rope_theta", in: p) { return theta }
        return 10000
    }
}

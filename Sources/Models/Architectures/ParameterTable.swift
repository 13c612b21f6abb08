/// The parameters of a model as Hugging Face names them, with shapes and tensor-parallel splits.
///
/// This table is the contract between the trainer (which owns full tensors) and the engine (whose
/// ranks hold shards): the weight sync validates names and shapes against it before writing a byte.
public struct ParameterTable: Sendable, Equatable {
    public let specs: [ParameterSpec]
    private let index: [String: Int]

    public init(_ specs: [ParameterSpec]) {
        self.specs = specs
        var index: [String: Int] = [:]
        for (i, s) in specs.enumerated() { index[s.name] = i }
        self.index = index
    }

    public static func == (a: ParameterTable, b: ParameterTable) -> Bool { a.specs == b.specs }

    public subscript(name: String) -> ParameterSpec? { index[name].map { specs[$0] } }
    public var names: [String] { specs.map(\.name) }
    public var totalCount: Int { specs.reduce(0) { $0 + $1.count } }

    /// The parameters of `config`'s architecture, in the order Hugging Face registers them.
    public init(config c: ModelConfig) {
        var p: [ParameterSpec] = []
        let h = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKVHeads * c.headDim, f = c.intermediateSize
        switch c.architecture {
        case .opt:
            let d = "model.decoder."
            let proj = c.wordEmbedProjDim
            p.append(.init(d + "embed_tokens.weight", [c.vocabSize, proj]))
            p.append(.init(d + "embed_positions.weight", [c.maxPositions + OPTLayout.positionOffset, h]))
            if proj != h {
                p.append(.init(d + "project_out.weight", [proj, h]))
                p.append(.init(d + "project_in.weight", [h, proj]))
            }
            if c.doLayerNormBefore {
                p.append(.init(d + "final_layer_norm.weight", [h]))
                p.append(.init(d + "final_layer_norm.bias", [h]))
            }
            for i in 0..<c.numLayers {
                let l = d + "layers.\(i)."
                for name in ["k_proj", "v_proj", "q_proj"] {
                    p.append(.init(l + "self_attn.\(name).weight", [h, h], .column))
                    if c.enableBias { p.append(.init(l + "self_attn.\(name).bias", [h], .column)) }
                }
                p.append(.init(l + "self_attn.out_proj.weight", [h, h], .row))
                if c.enableBias { p.append(.init(l + "self_attn.out_proj.bias", [h])) }
                p.append(.init(l + "self_attn_layer_norm.weight", [h]))
                p.append(.init(l + "self_attn_layer_norm.bias", [h]))
                p.append(.init(l + "fc1.weight", [f, h], .column))
                if c.enableBias { p.append(.init(l + "fc1.bias", [f], .column)) }
                p.append(.init(l + "fc2.weight", [h, f], .row))
                if c.enableBias { p.append(.init(l + "fc2.bias", [h])) }
                p.append(.init(l + "final_layer_norm.weight", [h]))
                p.append(.init(l + "final_layer_norm.bias", [h]))
            }
            if !c.tieWordEmbeddings { p.append(.init("lm_head.weight", [c.vocabSize, proj])) }
        case .llama, .qwen2:
            // Qwen2 always has q/k/v biases and never an o_proj bias; Llama has both or neither.
            let qkvBias = c.architecture == .qwen2 || c.attentionBias
            let outputBias = c.architecture == .llama && c.attentionBias
            p.append(.init("model.embed_tokens.weight", [c.vocabSize, h]))
            for i in 0..<c.numLayers {
                let l = "model.layers.\(i)."
                p.append(.init(l + "self_attn.q_proj.weight", [q, h], .column))
                if qkvBias { p.append(.init(l + "self_attn.q_proj.bias", [q], .column)) }
                p.append(.init(l + "self_attn.k_proj.weight", [kv, h], .column))
                if qkvBias { p.append(.init(l + "self_attn.k_proj.bias", [kv], .column)) }
                p.append(.init(l + "self_attn.v_proj.weight", [kv, h], .column))
                if qkvBias { p.append(.init(l + "self_attn.v_proj.bias", [kv], .column)) }
                p.append(.init(l + "self_attn.o_proj.weight", [h, q], .row))
                if outputBias { p.append(.init(l + "self_attn.o_proj.bias", [h])) }
                p.append(.init(l + "mlp.gate_proj.weight", [f, h], .column))
                p.append(.init(l + "mlp.up_proj.weight", [f, h], .column))
                p.append(.init(l + "mlp.down_proj.weight", [h, f], .row))
                if c.mlpBias {
                    p.append(.init(l + "mlp.gate_proj.bias", [f], .column))
                    p.append(.init(l + "mlp.up_proj.bias", [f], .column))
                    p.append(.init(l + "mlp.down_proj.bias", [h]))
                }
                p.append(.init(l + "input_layernorm.weight", [h]))
                p.append(.init(l + "post_attention_layernorm.weight", [h]))
            }
            p.append(.init("model.norm.weight", [h]))
            if !c.tieWordEmbeddings { p.append(.init("lm_head.weight", [c.vocabSize, h])) }
        }
        self.init(p)
    }

    /// Checks that every split parameter divides across `worldSize` ranks, and that heads do.
    public static func validate(config c: ModelConfig, tensorParallelSize tp: Int) throws(ModelError) {
        guard tp >= 1 else { throw ModelError("tensor-parallel size must be ≥ 1, got \(tp)") }
        guard c.numHeads % tp == 0 else {
            throw ModelError("tensor-parallel size \(tp) does not divide the \(c.numHeads) attention heads")
        }
        guard c.numKVHeads % tp == 0 else {
            throw ModelError("tensor-parallel size \(tp) does not divide the \(c.numKVHeads) key/value heads")
        }
        guard c.intermediateSize % tp == 0 else {
            throw ModelError("tensor-parallel size \(tp) does not divide the MLP size \(c.intermediateSize)")
        }
    }
}

enum OPTLayout {
    /// OPT's learned positions are looked up at `position + 2` (a fairseq legacy HF keeps).
    static let positionOffset = 2
}

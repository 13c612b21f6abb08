import Compute

/// Sums a tensor across the ranks of a tensor-parallel group, in place. Every rank must end with the
/// bitwise same result (so that ranks sample the same tokens without a broadcast).
public typealias AllReduce = @Sendable (Tensor) throws -> Void

/// The decoder-only transformer of OPT, Llama and Qwen2, written once against the op set.
///
/// One instance is one tensor-parallel rank's replica: it holds that rank's shard of every parameter
/// (see `ParameterTable`) and calls `allReduce` after each row-parallel layer. Tokens of a step are a
/// ragged batch: several sequences laid end to end, each at its own positions, reading and writing a
/// paged `KVCache` through an `AttentionLayout`.
public final class TransformerModel: @unchecked Sendable {
    public let config: ModelConfig
    public let rank: Int
    public let worldSize: Int
    public let backend: any ComputeBackend
    /// This rank's shards by Hugging Face name. Weight sync writes into these tensors in place.
    public let weights: [String: Tensor]
    private let allReduce: AllReduce?

    let localHeads: Int
    let localKVHeads: Int
    /// The rotary parameters, computed once from the config (nil for OPT, and for dynamic NTK, whose
    /// frequencies depend on the positions of each pass).
    private let rotary: RotaryEmbedding?

    /// The biases of the linear layers (not the norms'), for ``ComputeBackend/refreshBiasCopies(_:rows:)``.
    let linearBiases: [Tensor]

    public init(config: ModelConfig, weights: [String: Tensor], backend: any ComputeBackend,
                rank: Int = 0, worldSize: Int = 1, allReduce: AllReduce? = nil) throws(ModelError) {
        try ParameterTable.validate(config: config, tensorParallelSize: worldSize)
        guard worldSize == 1 || allReduce != nil else { throw ModelError("tensor parallelism needs an all-reduce") }
        if config.architecture != .opt && config.hiddenAct != .silu {
            throw ModelError("\(config.architecture) with hidden_act \(config.hiddenAct) is not supported (only silu)")
        }
        let table = ParameterTable(config: config)
        for spec in table.specs {
            guard let t = weights[spec.name] else { throw ModelError("missing weight \(spec.name)") }
            let expected = spec.shard.shardShape(of: spec.shape, worldSize: worldSize)
            guard t.shape == expected else {
                throw ModelError("weight \(spec.name) has shape \(t.shape), expected \(expected)")
            }
        }
        self.config = config
        self.weights = weights
        linearBiases = weights.filter { name, _ in
            name.hasSuffix("_proj.bias") || name.hasSuffix("fc1.bias") || name.hasSuffix("fc2.bias")
        }.sorted { $0.key < $1.key }.map(\.value)
        self.backend = backend
        self.rank = rank
        self.worldSize = worldSize
        self.allReduce = allReduce
        localHeads = config.numHeads / worldSize
        localKVHeads = config.numKVHeads / worldSize
        rotary = config.architecture == .opt || config.ropeScaling.dependsOnSequenceLength
            ? nil
            : config.rotaryEmbedding(sequenceLength: nil)
    }

    /// The rotary parameters for a pass over `positions` (dynamic NTK: as transformers, from the
    /// largest position + 1 of the pass).
    func rotaryEmbedding(positions: [Int32]) -> RotaryEmbedding {
        if let rotary { return rotary }
        return config.rotaryEmbedding(sequenceLength: Int(positions.max() ?? 0) + 1)
    }

    /// The KV cache's element type: on a GPU, the 16-bit type of 16-bit weights (a bf16 model in PyTorch
    /// keeps bf16 keys and values, and decode reads the cache at every step: half the bytes); f32 otherwise.
    public var cacheDType: DType {
        guard backend.device.kind != .cpu else { return .f32 }
        let table = config.architecture == .opt ? "model.decoder.embed_tokens.weight" : "model.embed_tokens.weight"
        let dtype = weights[table]?.dtype ?? .f32
        return dtype == .bf16 || dtype == .f16 ? dtype : .f32
    }

    /// Creates the KV cache this replica reads and writes.
    public func makeCache(blockSize: Int, numBlocks: Int) throws(ComputeError) -> KVCache {
        try KVCache(layers: config.numLayers, kvHeads: localKVHeads, headDim: config.headDim,
                    blockSize: blockSize, numBlocks: numBlocks, dtype: cacheDType, backend: backend)
    }

    /// Creates the KV cache in `storage` (one flat tensor of `cacheBytesPerBlock · numBlocks` bytes).
    public func makeCache(blockSize: Int, numBlocks: Int, storage: Tensor) -> KVCache {
        KVCache(layers: config.numLayers, kvHeads: localKVHeads, headDim: config.headDim,
                blockSize: blockSize, numBlocks: numBlocks, dtype: cacheDType, storage: storage)
    }

    /// Cache bytes per block for this replica.
    public func cacheBytesPerBlock(blockSize: Int) -> Int {
        KVCache.bytesPerBlock(layers: config.numLayers, kvHeads: localKVHeads, headDim: config.headDim, blockSize: blockSize,
                              dtype: cacheDType)
    }

    private func w(_ name: String) -> Tensor { weights[name]! }
    private func wOpt(_ name: String) -> Tensor? { weights[name] }

    /// Runs one step. `tokens[n]` is at `layout.positionOfToken[n]` of sequence
    /// `layout.sequenceOfToken[n]`; its key/value go to the cache. Returns f32 logits `[logitRows.count, V]`
    /// for the requested token rows (the last token of each sequence when generating).
    public func forward(tokens: [Int32], layout: AttentionLayout, cache: KVCache, logitRows: [Int]) throws -> Tensor {
        try forward(step: prepareStep(tokens: tokens, layout: layout, cache: cache, logitRows: logitRows), cache: cache)
    }

    /// Checks a step's indices against the model and `cache` and hands them to the backend
    /// (``ComputeBackend/prepareStep(tokens:layout:logitRows:positionOffset:rotary:)``).
    public func prepareStep(tokens: [Int32], layout: AttentionLayout, cache: KVCache, logitRows: [Int]) throws -> StepIndices {
        let c = config, n = tokens.count
        for t in tokens where t < 0 || Int(t) >= c.vocabSize {
            throw ModelError("token id \(t) is outside the vocabulary (size \(c.vocabSize))")
        }
        guard layout.positionOfToken.count == n && layout.sequenceOfToken.count == n && layout.blockSize == cache.blockSize else {
            throw ModelError("a step of \(n) tokens has a layout of \(layout.positionOfToken.count) positions and "
                + "\(layout.sequenceOfToken.count) sequence indices, block size \(layout.blockSize) (the cache's: \(cache.blockSize))")
        }
        // Dynamic NTK exists to run past max_position_embeddings; the other variants stop there.
        if !c.ropeScaling.dependsOnSequenceLength {
            for p in layout.positionOfToken where Int(p) >= c.maxPositions {
                throw ModelError("position \(p) exceeds the model's \(c.maxPositions) positions")
            }
        }
        for t in 0..<n {
            let sequence = Int(layout.sequenceOfToken[t]), position = Int(layout.positionOfToken[t])
            guard sequence >= 0 && sequence < layout.blockTables.count else {
                throw ModelError("token \(t) belongs to sequence \(sequence), which has no block table")
            }
            guard position >= 0 && position / layout.blockSize < layout.blockTables[sequence].count else {
                throw ModelError("position \(position) of sequence \(sequence) is beyond its block table")
            }
        }
        for table in layout.blockTables {
            if let bad = table.first(where: { $0 < 0 || Int($0) >= cache.numBlocks }) {
                throw ModelError("KV block \(bad) is outside the cache of \(cache.numBlocks) blocks")
            }
        }
        if let bad = logitRows.first(where: { $0 < 0 || $0 >= n }) {
            throw ModelError("logit row \(bad) is outside the step's \(n) tokens")
        }
        let embedding = c.architecture == .opt ? nil : rotaryEmbedding(positions: layout.positionOfToken)
        return try backend.prepareStep(tokens: tokens, layout: layout, logitRows: logitRows.map { Int32($0) },
                                       positionOffset: c.architecture == .opt ? Int32(OPTLayout.positionOffset) : 0,
                                       rotary: embedding)
    }

    /// Runs one step from indices made by ``prepareStep(tokens:layout:cache:logitRows:)``: f32 logits
    /// `[logitRows.count, V]`, the lm_head applied to ``finalHidden(step:cache:)``.
    public func forward(step: StepIndices, cache: KVCache) throws -> Tensor {
        try logits(finalHidden: finalHidden(step: step, cache: cache))
    }

    /// The lm_head: f32 logits `[m, V]` of final hidden rows `[m, H]` (from ``finalHidden(step:cache:)``).
    public func logits(finalHidden last: Tensor) throws -> Tensor {
        let c = config
        let head = wOpt("lm_head.weight") ?? w(c.architecture == .opt ? "model.decoder.embed_tokens.weight" : "model.embed_tokens.weight")
        let logits = try backend.empty([last.shape[0], c.vocabSize], dtype: .f32)
        backend.linear(last, weight: head, bias: nil, into: logits)
        return logits
    }

    /// Runs one step up to the lm_head: the final norm (and OPT's project_out) of the logit rows, f32
    /// `[logitRows.count, H]`. Reads no host array and allocates the same shapes for the same step shape,
    /// so a GPU backend can capture it once as a graph and replay it with new indices; the lm_head stays
    /// outside, so a recorded step keeps a few rows of hidden state, not `[rows, V]` logits.
    public func finalHidden(step: StepIndices, cache: KVCache) throws -> Tensor {
        let c = config, b = backend
        let n = step.tokens.count, h = c.hiddenSize

        // The linear layers' biases in the form the backend adds fastest, fresh for this step.
        b.refreshBiasCopies(linearBiases, rows: n)
        defer { b.releaseBiasCopies() }
        let x = try embed(step)
        let scratch = try b.empty([n, h], dtype: .f32)
        if c.architecture == .opt && !c.doLayerNormBefore {
            // Post-LN OPT (do_layer_norm_before = false, e.g. opt-350m) normalises after each residual add.
            for layer in 0..<c.numLayers {
                let p = layerPrefix(layer)
                try attention(x, prefix: p, layer: layer, step: step, cache: cache, into: scratch)
                b.add(x, scratch, into: x)
                norm(x, prefix: p, site: .attention, into: x)
                try mlp(x, prefix: p, into: scratch)
                b.add(x, scratch, into: x)
                norm(x, prefix: p, site: .mlp, into: x)
            }
        } else {
            // Pre-LN: each residual add is fused with the norm after it, which writes the operands of the
            // next GEMMs in their type (16-bit weights on a GPU).
            let normed = try b.empty([n, h], dtype: operandType)
            residualNorm(x, adding: nil, prefix: layerPrefix(0), site: .attention, into: normed)
            for layer in 0..<c.numLayers {
                let p = layerPrefix(layer)
                try attention(normed, prefix: p, layer: layer, step: step, cache: cache, into: scratch)
                residualNorm(x, adding: scratch, prefix: p, site: .mlp, into: normed)
                try mlp(normed, prefix: p, into: scratch)
                if layer + 1 < c.numLayers {
                    residualNorm(x, adding: scratch, prefix: layerPrefix(layer + 1), site: .attention, into: normed)
                } else {
                    b.add(x, scratch, into: x)
                }
            }
        }

        // Only the rows that need logits go through the final norm and the lm_head.
        let m = step.logitRows.count
        var last = try b.empty([m, h], dtype: .f32)
        b.gatherLogitRows(step, from: x, into: last)
        switch c.architecture {
        case .opt:
            if c.doLayerNormBefore {
                b.layerNorm(last, weight: w("model.decoder.final_layer_norm.weight"),
                            bias: w("model.decoder.final_layer_norm.bias"), eps: c.layerNormEps, into: last)
            }
            if let projectOut = wOpt("model.decoder.project_out.weight") {
                let projected = try b.empty([m, c.wordEmbedProjDim], dtype: .f32)
                b.linear(last, weight: projectOut, bias: nil, into: projected)
                last = projected
            }
        case .llama, .qwen2:
            b.rmsNorm(last, weight: w("model.norm.weight"), eps: c.rmsNormEps, into: last)
        }
        return last
    }

    private func embed(_ step: StepIndices) throws -> Tensor {
        let c = config, b = backend, n = step.tokens.count
        let x = try b.empty([n, c.hiddenSize], dtype: .f32)
        switch c.architecture {
        case .opt:
            let table = w("model.decoder.embed_tokens.weight")
            if let projectIn = wOpt("model.decoder.project_in.weight") {
                let small = try b.empty([n, c.wordEmbedProjDim], dtype: .f32)
                b.embedTokens(step, table: table, into: small)
                b.linear(small, weight: projectIn, bias: nil, into: x)
            } else {
                b.embedTokens(step, table: table, into: x)
            }
            b.embedPositions(step, table: w("model.decoder.embed_positions.weight"), into: x)
        case .llama, .qwen2:
            b.embedTokens(step, table: w("model.embed_tokens.weight"), into: x)
        }
        return x
    }

    private enum NormSite { case attention, mlp }

    private func layerPrefix(_ layer: Int) -> String {
        config.architecture == .opt ? "model.decoder.layers.\(layer)." : "model.layers.\(layer)."
    }

    /// The type of the activations that only feed GEMMs (normed inputs, attention context, MLP hidden
    /// after its activation): on a GPU with 16-bit weights, that type, written by the op that makes
    /// them instead of converted before each GEMM; f32 otherwise.
    var operandType: DType { cacheDType }

    private func residualNorm(_ x: Tensor, adding residual: Tensor?, prefix p: String, site: NormSite, into y: Tensor) {
        let c = config
        switch c.architecture {
        case .opt:
            let name = site == .attention ? "self_attn_layer_norm" : "final_layer_norm"
            backend.residualLayerNorm(x, adding: residual, weight: w(p + name + ".weight"), bias: w(p + name + ".bias"),
                                      eps: c.layerNormEps, into: y)
        case .llama, .qwen2:
            let name = site == .attention ? "input_layernorm" : "post_attention_layernorm"
            backend.residualRMSNorm(x, adding: residual, weight: w(p + name + ".weight"), eps: c.rmsNormEps, into: y)
        }
    }

    private func norm(_ x: Tensor, prefix p: String, site: NormSite, into y: Tensor) {
        let c = config
        switch c.architecture {
        case .opt:
            let name = site == .attention ? "self_attn_layer_norm" : "final_layer_norm"
            backend.layerNorm(x, weight: w(p + name + ".weight"), bias: w(p + name + ".bias"), eps: c.layerNormEps, into: y)
        case .llama, .qwen2:
            let name = site == .attention ? "input_layernorm" : "post_attention_layernorm"
            backend.rmsNorm(x, weight: w(p + name + ".weight"), eps: c.rmsNormEps, into: y)
        }
    }

    /// Bias of a row-parallel layer: added by rank 0 only, so the all-reduce counts it once.
    private func rowBias(_ name: String) -> Tensor? { rank == 0 ? wOpt(name) : nil }

    private func attention(_ x: Tensor, prefix p: String, layer: Int, step: StepIndices, cache: KVCache, into out: Tensor) throws {
        let c = config, b = backend, n = x.shape[0], d = c.headDim
        let attn = p + "self_attn."
        let q = try b.empty([n, localHeads, d], dtype: .f32)
        let k = try b.empty([n, localKVHeads, d], dtype: .f32)
        let v = try b.empty([n, localKVHeads, d], dtype: .f32)
        // One launch for the three on a GPU at decode sizes.
        b.linears(x, [(w(attn + "q_proj.weight"), wOpt(attn + "q_proj.bias"), q.reshaped([n, localHeads * d])),
                      (w(attn + "k_proj.weight"), wOpt(attn + "k_proj.bias"), k.reshaped([n, localKVHeads * d])),
                      (w(attn + "v_proj.weight"), wOpt(attn + "v_proj.bias"), v.reshaped([n, localKVHeads * d]))])
        if let embedding = step.rotary { b.rotary(queries: q, keys: k, step: step, embedding: embedding) }
        b.writeKV(k: k, v: v, kCache: cache.keys[layer], vCache: cache.values[layer], step: step)
        let context = try b.empty([n, localHeads, d], dtype: operandType)
        b.attention(q: q, kCache: cache.keys[layer], vCache: cache.values[layer], step: step,
                    scale: 1 / Float(d).squareRoot(), into: context)
        let outName = c.architecture == .opt ? "out_proj" : "o_proj"
        b.linear(context.reshaped([n, localHeads * d]), weight: w(attn + outName + ".weight"),
                 bias: rowBias(attn + outName + ".bias"), into: out)
        try allReduce?(out)
    }

    private func mlp(_ x: Tensor, prefix p: String, into out: Tensor) throws {
        let c = config, b = backend, n = x.shape[0]
        let f = c.intermediateSize / worldSize
        // The hidden layer after its activation, in the type of the next GEMM's operands; one launch for
        // the up projection(s) and the activation on a GPU at decode sizes.
        let activated = try b.empty([n, f], dtype: operandType)
        switch c.architecture {
        case .opt:
            try b.linearActivation(x, weight: w(p + "fc1.weight"), bias: wOpt(p + "fc1.bias"), activation: c.hiddenAct, into: activated)
            b.linear(activated, weight: w(p + "fc2.weight"), bias: rowBias(p + "fc2.bias"), into: out)
        case .llama, .qwen2:
            try b.gatedLinear(x, gate: w(p + "mlp.gate_proj.weight"), gateBias: wOpt(p + "mlp.gate_proj.bias"),
                              up: w(p + "mlp.up_proj.weight"), upBias: wOpt(p + "mlp.up_proj.bias"), into: activated)
            b.linear(activated, weight: w(p + "mlp.down_proj.weight"), bias: rowBias(p + "mlp.down_proj.bias"), into: out)
        }
        try allReduce?(out)
    }
}

import Compute
import Models

/// The decoder-only transformer of OPT, Llama and Qwen2 for training: forward over whole sequences with
/// the activations kept for the backward (or recomputed per layer), backward into f32 gradients.
///
/// The forward mirrors `TransformerModel` (OPT: learned positions at offset 2, pre- or post-LN,
/// project_in/out; Llama/Qwen2: RMSNorm, rotary, SwiGLU, Qwen2's q/k/v biases), but attends over
/// whole sequences with `causalAttention` instead of a KV cache. The lm_head and the log-probabilities
/// run `logitChunkRows` rows at a time, forward and backward together, so that the f32 logits of a
/// whole batch never exist at once. A tied lm_head is the embedding table, and its gradient adds into
/// the embedding's.
public final class TrainingModel: @unchecked Sendable {
    public let config: ModelConfig
    public let backend: any TrainingOps
    /// Parameters by Hugging Face name (f32, bf16 or f16).
    public let weights: [String: Tensor]
    /// f32 gradients by the same names; `forwardBackward` adds into them.
    public let gradients: [String: Tensor]
    /// Keep only each layer's input in the forward and recompute the layer during the backward.
    public let recomputeActivations: Bool
    /// Rows of logits computed at a time by the lm_head.
    public let logitChunkRows: Int

    let embeddingName: String
    let headName: String
    let layerNames: [LayerNames]

    public init(config: ModelConfig, weights: [String: Tensor], gradients: [String: Tensor],
                backend: any TrainingOps, recomputeActivations: Bool = false, logitChunkRows: Int = 1024) throws {
        if config.architecture != .opt && config.hiddenAct != .silu {
            throw ModelError("\(config.architecture) with hidden_act \(config.hiddenAct) is not supported (only silu)")
        }
        guard logitChunkRows >= 1 else { throw ModelError("logitChunkRows must be at least 1, not \(logitChunkRows)") }
        for spec in ParameterTable(config: config).specs {
            guard let w = weights[spec.name] else { throw ModelError("missing weight \(spec.name)") }
            guard w.shape == spec.shape else { throw ModelError("weight \(spec.name) has shape \(w.shape), expected \(spec.shape)") }
            guard let g = gradients[spec.name] else { throw ModelError("missing gradient of \(spec.name)") }
            guard g.shape == spec.shape, g.dtype == .f32 else {
                throw ModelError("gradient of \(spec.name) is \(g), expected f32 of shape \(spec.shape)")
            }
        }
        self.config = config
        self.backend = backend
        self.weights = weights
        self.gradients = gradients
        self.recomputeActivations = recomputeActivations
        self.logitChunkRows = logitChunkRows
        embeddingName = config.architecture == .opt ? "model.decoder.embed_tokens.weight" : "model.embed_tokens.weight"
        headName = weights["lm_head.weight"] != nil && !config.tieWordEmbeddings ? "lm_head.weight" : embeddingName
        layerNames = (0..<config.numLayers).map { LayerNames(config: config, layer: $0) }
    }

    // MARK: Public entry points

    /// Forward, objective, backward for one micro-batch; gradients accumulate (+=) into `gradients`
    /// (a tied embedding has one gradient, under its stored name). Returns the objective's loss sum.
    public func forwardBackward(_ batch: TokenBatch, objective: any TokenObjective) throws -> Double {
        try check(batch)
        return try backend.perform {
            let forward = try runForward(batch, keepActivations: !recomputeActivations, keepInputs: true)
            let dFeatures = try backend.zeros([batch.count, forward.features.shape[1]], dtype: .f32)
            let loss = try headPass(batch, features: forward.features, objective: objective, entropy: objective.wantsEntropy,
                                    featureGradient: dFeatures, collect: nil)
            try backward(batch, forward: forward, featureGradient: dFeatures)
            return loss
        }
    }

    /// Forward only: per-token log-probs (flat [batch*sequence], t == 0 entries 0) and optionally entropy.
    public func logProbs(_ batch: TokenBatch, entropy: Bool) throws -> (logProbs: [Float], entropy: [Float]?) {
        try check(batch)
        return try backend.perform {
            let forward = try runForward(batch, keepActivations: false, keepInputs: false)
            var logProbs = [Float](repeating: 0, count: batch.count)
            var entropies = entropy ? [Float](repeating: 0, count: batch.count) : nil
            _ = try headPass(batch, features: forward.features, objective: nil, entropy: entropy, featureGradient: nil) { tokens, lp, ent in
                for (i, token) in tokens.enumerated() {
                    logProbs[token] = lp[i]
                    if let ent { entropies?[token] = ent[i] }
                }
            }
            return (logProbs, entropies)
        }
    }

    // MARK: Checks

    func check(_ batch: TokenBatch) throws {
        let c = config
        guard batch.count > 0 else { throw ModelError("the batch holds no tokens") }
        guard batch.sequence <= c.maxPositions else {
            throw ModelError("sequences of \(batch.sequence) tokens exceed the model's \(c.maxPositions) positions")
        }
        for (i, id) in batch.ids.enumerated() where id < 0 || Int(id) >= c.vocabSize {
            throw ModelError("token id \(id) at row \(i / batch.sequence), column \(i % batch.sequence) is outside the vocabulary (size \(c.vocabSize))")
        }
    }

    // MARK: Forward

    struct Forward {
        /// Token embeddings before project_in (OPT with word_embed_proj_dim ≠ hidden), for its gradient.
        var smallEmbeddings: Tensor?
        /// Each layer's input (kept for the backward, empty for a forward only).
        var layerInputs: [Tensor]
        /// The last layer's output.
        var last: Tensor
        /// Each layer's saved activations (empty when recomputing).
        var layers: [LayerActivations]
        /// Input of the final norm's output to project_out (OPT), nil otherwise.
        var normed: Tensor?
        /// The rows the lm_head reads: [N, hidden or word_embed_proj_dim].
        var features: Tensor
    }

    func runForward(_ batch: TokenBatch, keepActivations: Bool, keepInputs: Bool) throws -> Forward {
        let c = config, b = backend, n = batch.count
        var small: Tensor?
        let x = try b.zeros([n, c.hiddenSize], dtype: .f32)
        switch c.architecture {
        case .opt:
            if let projectIn = weights["model.decoder.project_in.weight"] {
                let s = try b.zeros([n, c.wordEmbedProjDim], dtype: .f32)
                b.embedding(ids: batch.ids, table: w(embeddingName), into: s, accumulate: false)
                b.linear(s, weight: projectIn, bias: nil, into: x)
                small = s
            } else {
                b.embedding(ids: batch.ids, table: w(embeddingName), into: x, accumulate: false)
            }
            b.embedding(ids: optPositions(batch), table: w("model.decoder.embed_positions.weight"), into: x, accumulate: true)
        case .llama, .qwen2:
            b.embedding(ids: batch.ids, table: w(embeddingName), into: x, accumulate: false)
        }
        var inputs: [Tensor] = []
        var saved: [LayerActivations] = []
        var last = x
        for layer in 0..<c.numLayers {
            if keepInputs { inputs.append(last) }
            let acts = try layerForward(last, layer: layer, batch: batch)
            last = acts.output
            if keepActivations { saved.append(acts) }
        }
        var normed: Tensor?
        var features = last
        switch c.architecture {
        case .opt:
            if c.doLayerNormBefore {
                let f = try b.zeros([n, c.hiddenSize], dtype: .f32)
                b.layerNorm(last, weight: w("model.decoder.final_layer_norm.weight"), bias: w("model.decoder.final_layer_norm.bias"),
                            eps: c.layerNormEps, into: f)
                features = f
            }
            if let projectOut = weights["model.decoder.project_out.weight"] {
                let p = try b.zeros([n, c.wordEmbedProjDim], dtype: .f32)
                b.linear(features, weight: projectOut, bias: nil, into: p)
                normed = features
                features = p
            }
        case .llama, .qwen2:
            let f = try b.zeros([n, c.hiddenSize], dtype: .f32)
            b.rmsNorm(last, weight: w("model.norm.weight"), eps: c.rmsNormEps, into: f)
            features = f
        }
        return Forward(smallEmbeddings: small, layerInputs: inputs, last: last, layers: saved, normed: normed, features: features)
    }

    /// OPT's learned positions: t + 2 for token t of each sequence.
    func optPositions(_ batch: TokenBatch) -> [Int32] {
        (0..<batch.count).map { Int32($0 % batch.sequence + 2) }
    }

    func rotaryPositions(_ batch: TokenBatch) -> [Int32] {
        (0..<batch.count).map { Int32($0 % batch.sequence) }
    }

    func w(_ name: String) -> Tensor { weights[name]! }
    func g(_ name: String) -> Tensor { gradients[name]! }

    // MARK: lm_head and log-probabilities

    /// Runs the lm_head over `features` in chunks of rows. Row r = (b, t) predicts token (b, t + 1);
    /// the last row of each sequence predicts nothing. Per chunk: logits, log-probs of the targets,
    /// then either `collect` (forward only) or the objective's gradient through the log-probs, the
    /// lm_head's weight gradient, and the features' gradient rows. Returns the summed loss.
    func headPass(
        _ batch: TokenBatch, features: Tensor, objective: (any TokenObjective)?, entropy wantEntropy: Bool,
        featureGradient: Tensor?, collect: ((_ tokens: [Int], _ logProbs: [Float], _ entropy: [Float]?) -> Void)?
    ) throws -> Double {
        let b = backend, n = batch.count, v = config.vocabSize, t = batch.sequence
        let head = w(headName)
        var loss = 0.0
        var start = 0
        while start < n {
            let rows = min(logitChunkRows, n - start)
            let range = start..<start + rows
            defer { start += rows }
            var targets = [Int32](repeating: 0, count: rows)
            var tokens: [Int] = [], slots: [Int] = []
            tokens.reserveCapacity(rows)
            slots.reserveCapacity(rows)
            for r in range where r % t != t - 1 {
                targets[r - start] = batch.ids[r + 1]
                tokens.append(r + 1)
                slots.append(r - start)
            }
            if tokens.isEmpty { continue }
            let x = features.rows(range)
            let logits = try b.zeros([rows, v], dtype: .f32)
            b.linear(x, weight: head, bias: nil, into: logits)
            let lpTensor = try b.zeros([rows], dtype: .f32)
            let entropyTensor: Tensor? = try wantEntropy ? b.zeros([rows], dtype: .f32) : nil
            b.tokenLogProbs(logits, targets: targets, into: lpTensor, entropy: entropyTensor)
            let lpAll = try b.download(lpTensor).floats()
            let entAll = try entropyTensor.map { try b.download($0).floats() }
            let lp = slots.map { lpAll[$0] }
            let ent = entAll.map { e in slots.map { e[$0] } }
            if let collect { collect(tokens, lp, ent) }
            guard let objective, let featureGradient else { continue }
            let (chunkLoss, gradient) = try objective.evaluate(tokens: tokens, logProbs: lp, entropy: ent)
            guard gradient.count == tokens.count else {
                throw ModelError("the objective returned \(gradient.count) gradients for \(tokens.count) tokens")
            }
            loss += chunkLoss
            if gradient.allSatisfy({ $0 == 0 }) { continue }
            var dLogProb = [Float](repeating: 0, count: rows)
            for (i, slot) in slots.enumerated() { dLogProb[slot] = gradient[i] }
            let dLogProbTensor = try b.upload(Tensor(dLogProb, shape: [rows]))
            b.tokenLogProbsBackward(logits, targets: targets, logProbGradient: dLogProbTensor)
            b.linearBackwardInput(logits, weight: head, into: featureGradient.rows(range), accumulate: false)
            b.linearBackwardWeight(logits, input: x, weightGradient: g(headName), biasGradient: nil)
        }
        return loss
    }

    // MARK: Backward

    func backward(_ batch: TokenBatch, forward: Forward, featureGradient dFeatures: Tensor) throws {
        let c = config, b = backend, n = batch.count, h = c.hiddenSize
        let last = forward.last
        // Through project_out and the final norm to the last layer's output.
        var dTop = dFeatures
        if let projectOut = weights["model.decoder.project_out.weight"], let normed = forward.normed {
            b.linearBackwardWeight(dFeatures, input: normed, weightGradient: g("model.decoder.project_out.weight"), biasGradient: nil)
            let d = try b.zeros([n, h], dtype: .f32)
            b.linearBackwardInput(dFeatures, weight: projectOut, into: d, accumulate: false)
            dTop = d
        }
        var dx = try b.zeros([n, h], dtype: .f32)
        switch c.architecture {
        case .opt:
            if c.doLayerNormBefore {
                b.layerNormBackward(last, weight: w("model.decoder.final_layer_norm.weight"), eps: c.layerNormEps, outputGradient: dTop,
                                    into: dx, weightGradient: g("model.decoder.final_layer_norm.weight"),
                                    biasGradient: g("model.decoder.final_layer_norm.bias"))
            } else {
                dx = dTop
            }
        case .llama, .qwen2:
            b.rmsNormBackward(last, weight: w("model.norm.weight"), eps: c.rmsNormEps, outputGradient: dTop, into: dx,
                              weightGradient: g("model.norm.weight"))
        }

        for layer in stride(from: c.numLayers - 1, through: 0, by: -1) {
            let acts = recomputeActivations
                ? try layerForward(forward.layerInputs[layer], layer: layer, batch: batch)
                : forward.layers[layer]
            dx = try layerBackward(acts, layer: layer, batch: batch, outputGradient: dx)
        }

        // Embeddings.
        switch c.architecture {
        case .opt:
            b.embeddingBackward(ids: optPositions(batch), dx, into: g("model.decoder.embed_positions.weight"))
            if let projectIn = weights["model.decoder.project_in.weight"], let small = forward.smallEmbeddings {
                b.linearBackwardWeight(dx, input: small, weightGradient: g("model.decoder.project_in.weight"), biasGradient: nil)
                let dSmall = try b.zeros([n, c.wordEmbedProjDim], dtype: .f32)
                b.linearBackwardInput(dx, weight: projectIn, into: dSmall, accumulate: false)
                b.embeddingBackward(ids: batch.ids, dSmall, into: g(embeddingName))
            } else {
                b.embeddingBackward(ids: batch.ids, dx, into: g(embeddingName))
            }
        case .llama, .qwen2:
            b.embeddingBackward(ids: batch.ids, dx, into: g(embeddingName))
        }
    }
}

import Compute
import Models

/// Hugging Face names of one decoder layer's parameters.
struct LayerNames {
    var attentionNorm: String
    var mlpNorm: String
    var q: String, k: String, v: String, o: String
    /// OPT: fc1/fc2; Llama/Qwen2: gate/up/down.
    var fc1: String, fc2: String
    var gate: String, up: String, down: String

    init(config c: ModelConfig, layer: Int) {
        let p = c.architecture == .opt ? "model.decoder.layers.\(layer)." : "model.layers.\(layer)."
        let opt = c.architecture == .opt
        attentionNorm = p + (opt ? "self_attn_layer_norm" : "input_layernorm")
        mlpNorm = p + (opt ? "final_layer_norm" : "post_attention_layernorm")
        q = p + "self_attn.q_proj"
        k = p + "self_attn.k_proj"
        v = p + "self_attn.v_proj"
        o = p + (opt ? "self_attn.out_proj" : "self_attn.o_proj")
        fc1 = p + "fc1"
        fc2 = p + "fc2"
        gate = p + "mlp.gate_proj"
        up = p + "mlp.up_proj"
        down = p + "mlp.down_proj"
    }
}

/// What one layer's backward reads from its forward.
///
/// Pre-LN (Llama, Qwen2, most OPT): `a = norm1(x)`, `mid = x + attn(a)`, `m = norm2(mid)`,
/// `out = mid + mlp(m)`. Post-LN OPT: `mid = x + attn(x)`, `m = norm1(mid)`, `sum = m + mlp(m)`,
/// `out = norm2(sum)`.
struct LayerActivations {
    var input: Tensor
    /// The attention's input: norm1(x) pre-LN, x itself post-LN.
    var attentionInput: Tensor
    /// After rotary: [N, heads, headDim] / [N, kvHeads, headDim].
    var q: Tensor, k: Tensor, v: Tensor
    var context: Tensor
    var logSumExp: Tensor
    /// x + attention output.
    var middle: Tensor
    /// The MLP's input: norm2(middle) pre-LN, norm1(middle) post-LN.
    var mlpInput: Tensor
    /// OPT: fc1's output before the activation; Llama/Qwen2: the gate projection.
    var hidden: Tensor
    /// Llama/Qwen2: the up projection.
    var up: Tensor?
    /// The input of the MLP's output projection.
    var activated: Tensor
    /// Post-LN only: mlpInput + MLP output, the input of norm2.
    var outputSum: Tensor?
    var output: Tensor
}

extension TrainingModel {
    var preNorm: Bool { !(config.architecture == .opt && !config.doLayerNormBefore) }

    func norm(_ x: Tensor, _ name: String, into y: Tensor) {
        let c = config
        switch c.architecture {
        case .opt: backend.layerNorm(x, weight: w(name + ".weight"), bias: w(name + ".bias"), eps: c.layerNormEps, into: y)
        case .llama, .qwen2: backend.rmsNorm(x, weight: w(name + ".weight"), eps: c.rmsNormEps, into: y)
        }
    }

    /// `dx = norm'(x)ᵀ·dy`, parameter gradients accumulated.
    func normBackward(_ x: Tensor, _ name: String, outputGradient dy: Tensor, into dx: Tensor) {
        let c = config
        switch c.architecture {
        case .opt:
            backend.layerNormBackward(x, weight: w(name + ".weight"), eps: c.layerNormEps, outputGradient: dy, into: dx,
                                      weightGradient: g(name + ".weight"), biasGradient: g(name + ".bias"))
        case .llama, .qwen2:
            backend.rmsNormBackward(x, weight: w(name + ".weight"), eps: c.rmsNormEps, outputGradient: dy, into: dx,
                                    weightGradient: g(name + ".weight"))
        }
    }

    func linear(_ x: Tensor, _ name: String, into y: Tensor) {
        backend.linear(x, weight: w(name + ".weight"), bias: weights[name + ".bias"], into: y)
    }

    /// Weight (and bias) gradient of layer `name`, and `dx (+)= dy·W` when dx is given.
    func linearBackward(_ dy: Tensor, input x: Tensor, _ name: String, into dx: Tensor?, accumulate: Bool = false) {
        backend.linearBackwardWeight(dy, input: x, weightGradient: g(name + ".weight"), biasGradient: gradients[name + ".bias"])
        if let dx { backend.linearBackwardInput(dy, weight: w(name + ".weight"), into: dx, accumulate: accumulate) }
    }

    func layerForward(_ x: Tensor, layer: Int, batch: TokenBatch) throws -> LayerActivations {
        let c = config, b = backend, n = x.shape[0], h = c.hiddenSize, d = c.headDim
        let names = layerNames[layer]
        let attentionInput: Tensor
        if preNorm {
            attentionInput = try b.zeros([n, h], dtype: .f32)
            norm(x, names.attentionNorm, into: attentionInput)
        } else {
            attentionInput = x
        }
        let q = try b.zeros([n, c.numHeads, d], dtype: .f32)
        let k = try b.zeros([n, c.numKVHeads, d], dtype: .f32)
        let v = try b.zeros([n, c.numKVHeads, d], dtype: .f32)
        linear(attentionInput, names.q, into: q.reshaped([n, c.numHeads * d]))
        linear(attentionInput, names.k, into: k.reshaped([n, c.numKVHeads * d]))
        linear(attentionInput, names.v, into: v.reshaped([n, c.numKVHeads * d]))
        if c.architecture != .opt {
            let positions = rotaryPositions(batch)
            b.rotary(q, positions: positions, theta: c.ropeTheta)
            b.rotary(k, positions: positions, theta: c.ropeTheta)
        }
        let context = try b.zeros([n, c.numHeads, d], dtype: .f32)
        let lse = try b.zeros([n, c.numHeads], dtype: .f32)
        b.causalAttention(q: q, k: k, v: v, batch: batch.batch, sequence: batch.sequence, scale: attentionScale,
                          into: context, logSumExp: lse)
        let middle = try b.zeros([n, h], dtype: .f32)
        linear(context.reshaped([n, c.numHeads * d]), names.o, into: middle)
        b.add(x, middle, into: middle)

        let mlpInput = try b.zeros([n, h], dtype: .f32)
        norm(middle, preNorm ? names.mlpNorm : names.attentionNorm, into: mlpInput)
        let f = c.intermediateSize
        let hidden = try b.zeros([n, f], dtype: .f32)
        let activated = try b.zeros([n, f], dtype: .f32)
        var up: Tensor?
        let mlpOutput = try b.zeros([n, h], dtype: .f32)
        switch c.architecture {
        case .opt:
            linear(mlpInput, names.fc1, into: hidden)
            b.activation(c.hiddenAct, hidden, into: activated)
            linear(activated, names.fc2, into: mlpOutput)
        case .llama, .qwen2:
            let u = try b.zeros([n, f], dtype: .f32)
            linear(mlpInput, names.gate, into: hidden)
            linear(mlpInput, names.up, into: u)
            b.swiGLU(gate: hidden, up: u, into: activated)
            linear(activated, names.down, into: mlpOutput)
            up = u
        }
        var outputSum: Tensor?
        let output: Tensor
        if preNorm {
            b.add(middle, mlpOutput, into: mlpOutput)
            output = mlpOutput
        } else {
            b.add(mlpInput, mlpOutput, into: mlpOutput)
            outputSum = mlpOutput
            output = try b.zeros([n, h], dtype: .f32)
            norm(mlpOutput, names.mlpNorm, into: output)
        }
        return LayerActivations(input: x, attentionInput: attentionInput, q: q, k: k, v: v, context: context, logSumExp: lse,
                                middle: middle, mlpInput: mlpInput, hidden: hidden, up: up, activated: activated,
                                outputSum: outputSum, output: output)
    }

    var attentionScale: Float { 1 / Float(config.headDim).squareRoot() }

    /// Gradients of the layer's parameters from `dOut` = ∂loss/∂output; returns ∂loss/∂input.
    func layerBackward(_ a: LayerActivations, layer: Int, batch: TokenBatch, outputGradient dOut: Tensor) throws -> Tensor {
        let c = config, b = backend, n = a.input.shape[0], h = c.hiddenSize, d = c.headDim, f = c.intermediateSize
        let names = layerNames[layer]

        // Residual around the MLP: dMLPOut is the MLP output's gradient, dMiddle the middle's.
        let dMLPOut: Tensor
        if let sum = a.outputSum {
            dMLPOut = try b.zeros([n, h], dtype: .f32)
            normBackward(sum, names.mlpNorm, outputGradient: dOut, into: dMLPOut)
        } else {
            dMLPOut = dOut
        }
        let dMLPIn = try b.zeros([n, h], dtype: .f32)
        let dHidden = try b.zeros([n, f], dtype: .f32)
        switch c.architecture {
        case .opt:
            linearBackward(dMLPOut, input: a.activated, names.fc2, into: dHidden)
            b.activationBackward(c.hiddenAct, input: a.hidden, outputGradient: dHidden, into: dHidden)
            linearBackward(dHidden, input: a.mlpInput, names.fc1, into: dMLPIn)
        case .llama, .qwen2:
            let dActivated = try b.zeros([n, f], dtype: .f32)
            let dUp = try b.zeros([n, f], dtype: .f32)
            linearBackward(dMLPOut, input: a.activated, names.down, into: dActivated)
            b.swiGLUBackward(gate: a.hidden, up: a.up!, outputGradient: dActivated, gateGradient: dHidden, upGradient: dUp)
            linearBackward(dHidden, input: a.mlpInput, names.gate, into: dMLPIn)
            linearBackward(dUp, input: a.mlpInput, names.up, into: dMLPIn, accumulate: true)
        }
        let dMiddle = try b.zeros([n, h], dtype: .f32)
        if preNorm {
            normBackward(a.middle, names.mlpNorm, outputGradient: dMLPIn, into: dMiddle)
            b.add(dMiddle, dOut, into: dMiddle)
        } else {
            b.add(dMLPIn, dMLPOut, into: dMLPIn)
            normBackward(a.middle, names.attentionNorm, outputGradient: dMLPIn, into: dMiddle)
        }

        // Attention.
        let dContext = try b.zeros([n, c.numHeads, d], dtype: .f32)
        linearBackward(dMiddle, input: a.context.reshaped([n, c.numHeads * d]), names.o, into: dContext.reshaped([n, c.numHeads * d]))
        let dq = try b.zeros([n, c.numHeads, d], dtype: .f32)
        let dk = try b.zeros([n, c.numKVHeads, d], dtype: .f32)
        let dv = try b.zeros([n, c.numKVHeads, d], dtype: .f32)
        b.causalAttentionBackward(q: a.q, k: a.k, v: a.v, out: a.context, logSumExp: a.logSumExp, outputGradient: dContext,
                                  batch: batch.batch, sequence: batch.sequence, scale: attentionScale,
                                  queryGradient: dq, keyGradient: dk, valueGradient: dv)
        if c.architecture != .opt {
            let positions = rotaryPositions(batch)
            b.rotaryBackward(dq, positions: positions, theta: c.ropeTheta)
            b.rotaryBackward(dk, positions: positions, theta: c.ropeTheta)
        }
        let dAttentionIn = try b.zeros([n, h], dtype: .f32)
        linearBackward(dq.reshaped([n, c.numHeads * d]), input: a.attentionInput, names.q, into: dAttentionIn)
        linearBackward(dk.reshaped([n, c.numKVHeads * d]), input: a.attentionInput, names.k, into: dAttentionIn, accumulate: true)
        linearBackward(dv.reshaped([n, c.numKVHeads * d]), input: a.attentionInput, names.v, into: dAttentionIn, accumulate: true)
        if preNorm {
            let dx = try b.zeros([n, h], dtype: .f32)
            normBackward(a.input, names.attentionNorm, outputGradient: dAttentionIn, into: dx)
            b.add(dx, dMiddle, into: dx)
            return dx
        }
        b.add(dAttentionIn, dMiddle, into: dAttentionIn)
        return dAttentionIn
    }
}

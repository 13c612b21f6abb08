/// Activation functions of the supported architectures.
public enum Activation: String, Sendable, Codable {
    case relu
    /// Exact GELU, 0.5·x·(1 + erf(x/√2)) — HF `gelu`.
    case gelu
    /// Tanh approximation — HF `gelu_new` / `gelu_pytorch_tanh`.
    case geluTanh
    /// x·sigmoid(x) — HF `silu` / `swish`.
    case silu
}

/// Where each new token's keys and values live in a paged KV cache, and what it attends to.
///
/// The cache of one layer is `[numBlocks * blockSize, kvHeads, headDim]`; a sequence owns a list of
/// blocks (its block table). Token `n` of a step belongs to sequence `sequenceOfToken[n]`, sits at
/// position `positionOfToken[n]` and attends causally to positions `0...positionOfToken[n]` of its
/// sequence, which must all be in the cache (the step's own keys are written first by `writeKV`).
public struct AttentionLayout: Sendable {
    public var blockSize: Int
    public var blockTables: [[Int32]]
    public var sequenceOfToken: [Int32]
    public var positionOfToken: [Int32]

    public init(blockSize: Int, blockTables: [[Int32]], sequenceOfToken: [Int32], positionOfToken: [Int32]) {
        self.blockSize = blockSize
        self.blockTables = blockTables
        self.sequenceOfToken = sequenceOfToken
        self.positionOfToken = positionOfToken
    }

    /// Cache row (slot) of token `n`: block `table[pos / blockSize]`, offset `pos % blockSize`.
    @inlinable public func slot(ofToken n: Int) -> Int {
        let pos = Int(positionOfToken[n])
        let table = blockTables[Int(sequenceOfToken[n])]
        return Int(table[pos / blockSize]) * blockSize + pos % blockSize
    }

    /// Cache row holding position `pos` of sequence `seq`.
    @inlinable public func slot(sequence seq: Int, position pos: Int) -> Int {
        Int(blockTables[seq][pos / blockSize]) * blockSize + pos % blockSize
    }
}

/// The op set the models are written against. One implementation per device kind (CPU in Swift,
/// CUDA with cuBLASLt and NVRTC kernels); model code never loops over elements itself.
///
/// Conventions: activations are f32 and contiguous; `N` is the number of tokens in the step
/// (sequences of a batch laid end to end, a "ragged" batch as vLLM does); weights use Hugging Face
/// layouts (`[out, in]` for linear layers) in f32, bf16 or f16 and are converted on the fly.
/// Every op writes its result into a caller-provided tensor so that buffers are reused across steps.
public protocol ComputeBackend: Sendable {
    var device: Device { get }

    /// A zero-filled tensor on this backend's device.
    func zeros(_ shape: [Int], dtype: DType) throws(ComputeError) -> Tensor

    /// A tensor whose contents are unspecified, for a result the next op writes whole (on a GPU it
    /// skips the memset `zeros` queues). Defaults to `zeros`.
    func empty(_ shape: [Int], dtype: DType) throws(ComputeError) -> Tensor

    /// `y[n, o] = Σ_k x[n, k] · w[o, k] + b[o]`. x: [N, K] f32; weight: [O, K]; bias: [O]; y: [N, O] f32.
    func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, into y: Tensor)

    /// Several linear layers of one input, `layer.output = linear(x, layer.weight, layer.bias)` for each
    /// (the q, k and v projections). Defaults to one ``linear(_:weight:bias:into:)`` each; a GPU may run
    /// them in one launch, with the same results.
    func linears(_ x: Tensor, _ layers: [(weight: Tensor, bias: Tensor?, output: Tensor)])

    /// `y = act(x · Wᵀ + b)`: a linear layer and its activation (OPT's fc1). y: [N, O], f32 or, as for
    /// ``activation(_:_:into:)``, a 16-bit type. Defaults to ``unfusedLinearActivation(_:weight:bias:activation:into:)``;
    /// a GPU may run both in one launch, with the same results. Throws when the f32 scratch of the
    /// unfused form cannot be allocated.
    func linearActivation(_ x: Tensor, weight: Tensor, bias: Tensor?, activation: Activation, into y: Tensor) throws(ComputeError)

    /// `y = silu(x · Gᵀ + bg) · (x · Uᵀ + bu)`: the gate and up projections of a SwiGLU MLP and their
    /// product (Llama/Qwen2). y: [N, O], f32 or, as for ``swiGLU(gate:up:into:)``, a 16-bit type. Defaults to
    /// ``unfusedGatedLinear(_:gate:gateBias:up:upBias:into:)``; a GPU may run it in one launch, with the
    /// same results. Throws when the f32 scratch of the unfused form cannot be allocated.
    func gatedLinear(_ x: Tensor, gate: Tensor, gateBias: Tensor?, up: Tensor, upBias: Tensor?, into y: Tensor) throws(ComputeError)

    /// `y[n, :] = table[ids[n], :]` (or `+=` when `accumulate`). table: [V, H] any float dtype; y: [N, H].
    func embedding(ids: [Int32], table: Tensor, into y: Tensor, accumulate: Bool)

    /// Copies `biases` now, in op order, into the form the fastest `linear` of `rows` rows adds them in
    /// (on a GPU, f32 copies that cuBLASLt's epilogue adds, where 16-bit biases would need a pass of their
    /// own); `linear` uses the copies until ``releaseBiasCopies()``. A model calls it at the start of each
    /// step, inside a recorded step too, so a copy never outlives a weight update. Default: nothing.
    func refreshBiasCopies(_ biases: [Tensor], rows: Int)

    /// Ends the use of the copies of ``refreshBiasCopies(_:)``.
    func releaseBiasCopies()

    /// Layer norm over the last dimension (biased variance, as PyTorch). x, y: [N, H].
    func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float, into y: Tensor)

    /// RMS norm over the last dimension: `y = x / sqrt(mean(x²) + eps) · w`. x, y: [N, H].
    func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, into y: Tensor)

    /// `x += residual` (when given), then `y = layerNorm(x)`: a block's residual add and the next norm in
    /// one pass. x: [N, H] f32, updated in place; y: [N, H], f32 — or, on backends whose `linear` takes
    /// 16-bit operands, the weights' 16-bit type. y must not alias x.
    func residualLayerNorm(_ x: Tensor, adding residual: Tensor?, weight: Tensor, bias: Tensor, eps: Float, into y: Tensor)

    /// `x += residual` (when given), then `y = rmsNorm(x)`; as ``residualLayerNorm(_:adding:weight:bias:eps:into:)``.
    func residualRMSNorm(_ x: Tensor, adding residual: Tensor?, weight: Tensor, eps: Float, into y: Tensor)

    /// Rotary position embedding in place, HF "rotate half" convention: for each head, pairs
    /// (i, i + d/2) for i < d/2 rotate by angle `f32(pos) · embedding.inverseFrequencies[i]`, with
    /// cos and sin scaled by `embedding.attentionScaling`. x: [N, heads, headDim].
    func rotary(_ x: Tensor, positions: [Int32], embedding: RotaryEmbedding)

    /// `y = act(x)` elementwise; x and y may be the same tensor.
    func activation(_ kind: Activation, _ x: Tensor, into y: Tensor)

    /// `y = silu(gate) · up` elementwise (the SwiGLU MLP of Llama/Qwen2).
    func swiGLU(gate: Tensor, up: Tensor, into y: Tensor)

    /// `y = a + b` elementwise, same shapes; y may alias a or b.
    func add(_ a: Tensor, _ b: Tensor, into y: Tensor)

    /// Writes the step's keys and values into the cache rows given by `layout.slot(ofToken:)`.
    /// k, v: [N, kvHeads, headDim]; caches: [slots, kvHeads, headDim] (f32).
    func writeKV(k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, layout: AttentionLayout)

    /// Causal attention of each token against its sequence's cached keys/values, grouped-query:
    /// query head h reads kv head `h / (heads / kvHeads)`. q, out: [N, heads, headDim].
    func attention(q: Tensor, kCache: Tensor, vCache: Tensor, layout: AttentionLayout, scale: Float, into out: Tensor)

    // MARK: Indexing ops of a step (see `StepIndices`)

    /// The step's index arrays as the ops below read them (uploaded once on a GPU). Defaults to the host arrays.
    func prepareStep(tokens: [Int32], layout: AttentionLayout, logitRows: [Int32], positionOffset: Int32,
                     rotary: RotaryEmbedding?) throws -> StepIndices

    /// `y[n, :] = table[tokens[n], :]`.
    func embedTokens(_ step: StepIndices, table: Tensor, into y: Tensor)

    /// `y[n, :] += table[position[n] + positionOffset, :]` (learned positions).
    func embedPositions(_ step: StepIndices, table: Tensor, into y: Tensor)

    /// `rotary(x, positions:embedding:)` at the step's positions with `embedding` (the step's own
    /// frequencies when they are the same).
    func rotary(_ x: Tensor, step: StepIndices, embedding: RotaryEmbedding)

    /// `rotary(_:step:embedding:)` of a layer's queries and keys (one launch on a GPU).
    func rotary(queries q: Tensor, keys k: Tensor, step: StepIndices, embedding: RotaryEmbedding)

    /// `writeKV(k:v:kCache:vCache:layout:)` with the step's layout.
    func writeKV(k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, step: StepIndices)

    /// `attention(q:kCache:vCache:layout:scale:into:)` with the step's layout.
    func attention(q: Tensor, kCache: Tensor, vCache: Tensor, step: StepIndices, scale: Float, into out: Tensor)

    /// `y[r, :] = x[logitRows[r], :]`.
    func gatherLogitRows(_ step: StepIndices, from x: Tensor, into y: Tensor)

    /// Row-wise softmax and log-softmax over the last dimension. x, y: [N, V].
    func softmax(_ x: Tensor, into y: Tensor)
    func logSoftmax(_ x: Tensor, into y: Tensor)

    // MARK: Moving data and running steps

    /// A tensor on this backend's device holding a copy of the contiguous host tensor `host` (same
    /// dtype and shape). CPU: `host` itself.
    func upload(_ host: Tensor) throws -> Tensor

    /// Copies the contiguous host tensor `host` into `destination` on this backend's device (same
    /// element count; the dtype converts when they differ), after the work queued before.
    func upload(_ host: Tensor, into destination: Tensor) throws

    /// A host tensor holding the values of `tensor`, once the work queued before has finished; throws
    /// the first failure of an op since the backend was made. CPU: `tensor` itself.
    func download(_ tensor: Tensor) throws -> Tensor

    /// Runs `body` — a whole step of ops — where this backend's ops run without a thread hop: on the
    /// device's executor thread (CUDA, whose contexts are per thread), inline on the CPU. Throws what
    /// `body` throws, or the first failure of an op queued by it.
    func perform<T>(_ body: () throws -> T) throws -> T
}

extension ComputeBackend {
    public func empty(_ shape: [Int], dtype: DType) throws(ComputeError) -> Tensor { try zeros(shape, dtype: dtype) }

    public func refreshBiasCopies(_ biases: [Tensor], rows: Int) {}
    public func releaseBiasCopies() {}

    public func linears(_ x: Tensor, _ layers: [(weight: Tensor, bias: Tensor?, output: Tensor)]) {
        for layer in layers { linear(x, weight: layer.weight, bias: layer.bias, into: layer.output) }
    }

    public func linearActivation(_ x: Tensor, weight: Tensor, bias: Tensor?, activation: Activation, into y: Tensor) throws(ComputeError) {
        try unfusedLinearActivation(x, weight: weight, bias: bias, activation: activation, into: y)
    }

    public func gatedLinear(_ x: Tensor, gate: Tensor, gateBias: Tensor?, up: Tensor, upBias: Tensor?, into y: Tensor) throws(ComputeError) {
        try unfusedGatedLinear(x, gate: gate, gateBias: gateBias, up: up, upBias: upBias, into: y)
    }

    /// ``linearActivation(_:weight:bias:activation:into:)`` as two ops: ``linear(_:weight:bias:into:)``
    /// into y (an f32 y) or an f32 scratch, then ``activation(_:_:into:)``.
    public func unfusedLinearActivation(_ x: Tensor, weight: Tensor, bias: Tensor?, activation kind: Activation,
                                        into y: Tensor) throws(ComputeError) {
        let hidden = y.dtype == .f32 ? y : try empty(y.shape, dtype: .f32)
        linear(x, weight: weight, bias: bias, into: hidden)
        activation(kind, hidden, into: y)
    }

    /// ``gatedLinear(_:gate:gateBias:up:upBias:into:)`` as three ops: two ``linear(_:weight:bias:into:)``
    /// (the gate into y when y is f32) and ``swiGLU(gate:up:into:)``.
    public func unfusedGatedLinear(_ x: Tensor, gate: Tensor, gateBias: Tensor?, up: Tensor, upBias: Tensor?,
                                   into y: Tensor) throws(ComputeError) {
        let gated = y.dtype == .f32 ? y : try empty(y.shape, dtype: .f32)
        let projected = try empty(y.shape, dtype: .f32)
        linear(x, weight: gate, bias: gateBias, into: gated)
        linear(x, weight: up, bias: upBias, into: projected)
        swiGLU(gate: gated, up: projected, into: y)
    }

    public func residualLayerNorm(_ x: Tensor, adding residual: Tensor?, weight: Tensor, bias: Tensor, eps: Float, into y: Tensor) {
        if let residual { add(x, residual, into: x) }
        layerNorm(x, weight: weight, bias: bias, eps: eps, into: y)
    }

    public func residualRMSNorm(_ x: Tensor, adding residual: Tensor?, weight: Tensor, eps: Float, into y: Tensor) {
        if let residual { add(x, residual, into: x) }
        rmsNorm(x, weight: weight, eps: eps, into: y)
    }

    public func prepareStep(tokens: [Int32], layout: AttentionLayout, logitRows: [Int32], positionOffset: Int32,
                            rotary: RotaryEmbedding?) throws -> StepIndices {
        StepIndices(tokens: tokens, layout: layout, logitRows: logitRows, positionOffset: positionOffset, rotary: rotary)
    }

    public func embedTokens(_ step: StepIndices, table: Tensor, into y: Tensor) {
        embedding(ids: step.tokens, table: table, into: y, accumulate: false)
    }

    public func embedPositions(_ step: StepIndices, table: Tensor, into y: Tensor) {
        embedding(ids: step.layout.positionOfToken.map { $0 &+ step.positionOffset }, table: table, into: y, accumulate: true)
    }

    public func rotary(_ x: Tensor, step: StepIndices, embedding: RotaryEmbedding) {
        rotary(x, positions: step.layout.positionOfToken, embedding: embedding)
    }

    public func rotary(queries q: Tensor, keys k: Tensor, step: StepIndices, embedding: RotaryEmbedding) {
        rotary(q, step: step, embedding: embedding)
        rotary(k, step: step, embedding: embedding)
    }

    public func writeKV(k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, step: StepIndices) {
        writeKV(k: k, v: v, kCache: kCache, vCache: vCache, layout: step.layout)
    }

    public func attention(q: Tensor, kCache: Tensor, vCache: Tensor, step: StepIndices, scale: Float, into out: Tensor) {
        attention(q: q, kCache: kCache, vCache: vCache, layout: step.layout, scale: scale, into: out)
    }

    public func gatherLogitRows(_ step: StepIndices, from x: Tensor, into y: Tensor) {
        embedding(ids: step.logitRows, table: x, into: y, accumulate: false)
    }

    /// Plain RoPE with base `theta`: angle `pos · theta^(-2i/d)`.
    public func rotary(_ x: Tensor, positions: [Int32], theta: Float) {
        rotary(x, positions: positions, embedding: RotaryEmbedding(theta: theta, headDim: x.shape[x.rank - 1]))
    }
}

import Compute
import Foundation

/// Generates completions with one model replica: continuous batching over a paged KV cache.
///
/// Every step runs one ragged batch: the next token of each running sequence plus the whole prompt of
/// any sequence admitted this step (prefill and decode together, as vLLM V1 schedules). A sequence is
/// admitted when the cache has blocks for its prompt; when the cache runs out mid-decode the newest
/// sequence is preempted and later recomputed, so every request finishes whatever the cache size.
/// Tensor-parallel ranks each run this same loop on identical logits and seeds, so they take identical
/// decisions without exchanging anything but the all-reduces inside the model.
public final class Generator: @unchecked Sendable {
    public let model: TransformerModel
    public let cache: KVCache
    /// Upper bound of tokens in one step (prefill chunks are not split; a prompt longer than this
    /// still runs alone).
    public var maxBatchTokens: Int
    /// Most sequences in one step (vLLM's `max_num_seqs`); the rest wait.
    public var maxSequences: Int

    /// Whether decode steps (one new token per sequence) run as recorded graphs where the backend can
    /// record them (``StepRecording``: CUDA graphs), padded to a batch-size bucket. On by default for one
    /// rank; `COLOCATE_CUDA_GRAPHS=0` turns it off. Set before the first `generate`.
    public var recordsDecodeSteps: Bool

    public init(model: TransformerModel, cache: KVCache, maxBatchTokens: Int = 4096, maxSequences: Int = 256) {
        self.model = model
        self.cache = cache
        self.maxBatchTokens = maxBatchTokens
        self.maxSequences = max(1, maxSequences)
        recordsDecodeSteps = model.worldSize == 1 && cache.numBlocks >= 2 && Self.recordingAllowed
    }

    /// `COLOCATE_CUDA_GRAPHS=0`, or per-op profiling (`COLOCATE_PROFILE_OPS=1`, which cannot time inside a
    /// graph), keeps decode steps eager; read once per process.
    private static let recordingAllowed = ProcessInfo.processInfo.environment["COLOCATE_CUDA_GRAPHS"] != "0"
        && ProcessInfo.processInfo.environment["COLOCATE_PROFILE_OPS"] != "1"

    /// Records decode steps with `recorder` instead of the backend's own (``StepRecording``): any
    /// ``StepGraphs``, e.g. one that checks the padded steps it is given. Needs a cache of 2 blocks or more.
    public convenience init(model: TransformerModel, cache: KVCache, maxBatchTokens: Int = 4096, maxSequences: Int = 256,
                            recorder: any StepGraphs) {
        self.init(model: model, cache: cache, maxBatchTokens: maxBatchTokens, maxSequences: maxSequences)
        recordsDecodeSteps = cache.numBlocks >= 2
        stepGraphs = recordsDecodeSteps ? recorder : nil
    }

    /// The recorded decode steps, made on first use. Tensor-parallel ranks stay eager: their all-reduce
    /// runs outside the recorded stream.
    private lazy var stepGraphs: (any StepGraphs)? = {
        guard recordsDecodeSteps, model.worldSize == 1, cache.numBlocks >= 2, let recording = model.backend as? any StepRecording else { return nil }
        return recording.makeStepGraphs()
    }()

    /// Decode shapes recorded so far (0 where steps are not recorded).
    public var recordedStepShapes: Int { stepGraphs?.recordedShapes ?? 0 }

    /// The batch size a decode step of `n` sequences is padded to, so that few shapes are recorded.
    static func bucket(_ n: Int) -> Int {
        for size in [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256] where n <= size { return size }
        return (n + 63) / 64 * 64
    }

    private struct Sequence {
        let request: Int
        let sample: Int
        let prompt: [Int32]
        let maxTokens: Int
        var output: [Int32] = []
        var logprobs: [Float] = []
        var rng: SplitMix64
        var blocks: [Int32] = []
        /// Tokens already in the cache.
        var cached = 0
        var finish: FinishReason?
        var all: [Int32] { prompt + output }
        /// `all.count` without making `all` (an array per sequence and step otherwise).
        var length: Int { prompt.count + output.count }
    }

    /// Completions for each prompt (`params.n` of them, in sample order). Runs as one
    /// `backend.perform`: on a GPU, the whole loop stays on the device's thread.
    ///
    /// `maxTokensPerPrompt`, when given, replaces `params.maxTokens` prompt by prompt (rollouts of
    /// different lengths in one call, as vLLM takes a `SamplingParams` per prompt).
    public func generate(prompts: [[Int32]], params: SamplingParams, maxTokensPerPrompt: [Int]? = nil) throws -> [[Completion]] {
        try params.validate()
        if let maxTokensPerPrompt {
            guard maxTokensPerPrompt.count == prompts.count else {
                throw ModelError("\(maxTokensPerPrompt.count) max-token limits for \(prompts.count) prompts")
            }
            if let bad = maxTokensPerPrompt.first(where: { $0 < 1 }) { throw ModelError("max tokens \(bad) must be at least 1") }
        }
        return try model.backend.perform { try run(prompts: prompts, params: params, maxTokensPerPrompt: maxTokensPerPrompt) }
    }

    private func run(prompts: [[Int32]], params: SamplingParams, maxTokensPerPrompt: [Int]?) throws -> [[Completion]] {
        let config = model.config
        let eos = Set(params.ignoreEOS ? [] : config.allEOSTokenIds.map { Int32($0) })
        let stops = eos.union(params.stopTokenIds)
        let seed = params.seed ?? UInt64.random(in: .min ... .max)
        // A recorded decode step pads its batch with rows that write their key and value into the last
        // block, kept out of the allocator.
        let graphs = stepGraphs
        let usableBlocks = graphs == nil ? cache.numBlocks : cache.numBlocks - 1
        let paddingBlock = Int32(cache.numBlocks - 1)
        var allocator = BlockAllocator(numBlocks: usableBlocks, blockSize: cache.blockSize)
        let capacityTokens = usableBlocks * cache.blockSize

        var waiting: [Sequence] = []
        for (r, prompt) in prompts.enumerated() {
            guard !prompt.isEmpty else { throw ModelError("prompt \(r) is empty") }
            guard prompt.count < config.maxPositions else {
                throw ModelError("prompt \(r) has \(prompt.count) tokens; the model has \(config.maxPositions) positions")
            }
            for t in prompt where t < 0 || Int(t) >= config.vocabSize {
                throw ModelError("token id \(t) in prompt \(r) is outside the vocabulary (size \(config.vocabSize))")
            }
            guard prompt.count + 1 <= capacityTokens else {
                throw ModelError("prompt \(r) needs \(prompt.count + 1) cache slots; the KV cache holds \(capacityTokens)")
            }
            for s in 0..<params.n {
                let streamSeed = seed &+ UInt64(r) &* 0x100_0000_01B3 &+ UInt64(s) &* 0x9E37_79B9
                waiting.append(Sequence(request: r, sample: s, prompt: prompt, maxTokens: maxTokensPerPrompt?[r] ?? params.maxTokens,
                                       rng: SplitMix64(seed: streamSeed)))
            }
        }
        waiting.reverse()  // pop from the end = first come, first served
        var running: [Sequence] = []
        var finished: [Sequence] = []

        while !waiting.isEmpty || !running.isEmpty {
            // Make room for each running sequence's next token, preempting the newest when out of blocks.
            var i = 0
            while i < running.count {
                let need = running[i].cached + 1
                if allocator.reserve(&running[i].blocks, tokens: need) {
                    i += 1
                    continue
                }
                var victim = running.removeLast()
                allocator.release(&victim.blocks)
                if running.isEmpty && waiting.isEmpty || victim.length >= capacityTokens {
                    // Alone and still out of room: the cache itself is the limit on its length.
                    victim.finish = .length
                    finished.append(victim)
                    continue
                }
                victim.cached = 0
                waiting.append(victim)
                // The victim may have been `running[i]` itself; the loop re-checks index i.
            }
            // Admit waiting sequences (recomputing everything they have so far) while blocks and budget last.
            var stepTokens = running.count
            while var next = waiting.last, running.count < maxSequences {
                let length = next.length
                if !running.isEmpty && stepTokens + length > maxBatchTokens { break }
                guard allocator.reserve(&next.blocks, tokens: length) else { break }
                waiting.removeLast()
                stepTokens += length
                running.append(next)
            }
            guard !running.isEmpty else {
                throw ModelError("the KV cache (\(capacityTokens) tokens) cannot hold even one sequence")
            }

            // Build the ragged batch.
            var tokens: [Int32] = [], seqOfToken: [Int32] = [], posOfToken: [Int32] = [], logitRows: [Int] = []
            var tables = running.map(\.blocks)
            for (s, seq) in running.enumerated() {
                let length = seq.prompt.count + seq.output.count
                if seq.cached == length - 1 {
                    tokens.append(seq.output.last ?? seq.prompt[length - 1])
                    seqOfToken.append(Int32(s))
                    posOfToken.append(Int32(length - 1))
                } else {
                    let all = seq.all
                    for p in seq.cached..<all.count {
                        tokens.append(all[p])
                        seqOfToken.append(Int32(s))
                        posOfToken.append(Int32(p))
                    }
                }
                logitRows.append(tokens.count - 1)
            }
            let stepLogits: Tensor
            if let graphs, tokens.count == running.count {
                // A decode step: padded to its bucket with rows at position 0 of the padding block.
                for _ in running.count..<Self.bucket(running.count) {
                    seqOfToken.append(Int32(tables.count))
                    tables.append([paddingBlock])
                    tokens.append(0)
                    posOfToken.append(0)
                    logitRows.append(tokens.count - 1)
                }
                let layout = AttentionLayout(blockSize: cache.blockSize, blockTables: tables,
                                             sequenceOfToken: seqOfToken, positionOfToken: posOfToken)
                let step = try model.prepareStep(tokens: tokens, layout: layout, cache: cache, logitRows: logitRows)
                stepLogits = try model.logits(finalHidden: graphs.run(step) { try model.finalHidden(step: $0, cache: cache) })
            } else {
                let layout = AttentionLayout(blockSize: cache.blockSize, blockTables: tables,
                                             sequenceOfToken: seqOfToken, positionOfToken: posOfToken)
                stepLogits = try model.forward(tokens: tokens, layout: layout, cache: cache, logitRows: logitRows)
            }
            let vocab = config.vocabSize
            // On a device that picks tokens itself, a token and a log-probability per sequence come back.
            // Otherwise the step's logits come back (CPU: no copy) and the host `Sampler` picks.
            let devicePicks: [(token: Int32, logprob: Float)]?
            let hostLogits: Tensor?
            if model.backend.device.kind != .cpu, let selector = model.backend as? any DeviceTokenSelection {
                if params.temperature < Sampler.greedyTemperature {
                    devicePicks = try selector.greedyTokens(stepLogits)
                } else {
                    // One uniform per sequence and step, as `Sampler.sample` draws on the host (and a
                    // fixed one for each padding row of a recorded step).
                    var uniforms: [Float] = []
                    uniforms.reserveCapacity(stepLogits.shape[0])
                    for s in running.indices { uniforms.append(running[s].rng.nextUnitFloat()) }
                    uniforms += repeatElement(0.5, count: stepLogits.shape[0] - running.count)
                    devicePicks = try selector.sampleTokens(stepLogits, temperature: params.temperature, topK: params.topK,
                                                            topP: params.topP, uniforms: uniforms)
                }
                hostLogits = nil
            } else {
                devicePicks = nil
                hostLogits = try model.backend.download(stepLogits)
            }
            let base = hostLogits?.pointer(Float.self)

            // Each sequence is updated in place: a copy out of `running` would share its token arrays,
            // and the appends would then copy them whole, every step.
            for s in running.indices {
                running[s].cached = running[s].length
                let (token, logprob) = devicePicks?[s]
                    ?? Sampler.sample(base! + s * vocab, vocab: vocab, params: params, rng: &running[s].rng)
                // NaN weights or a broken config give NaN logits, whose "samples" are garbage (token 0
                // again and again): say so instead of returning them.
                guard !logprob.isNaN, logprob != .infinity else {
                    let seq = running[s]
                    throw ModelError("the model's logits are not finite (NaN or infinity) at generation step \(seq.output.count + 1) of prompt \(seq.request)"
                        + (params.n > 1 ? " (sample \(seq.sample))" : "") + "; check the weights and config.json")
                }
                running[s].output.append(token)
                running[s].logprobs.append(logprob)
                if stops.contains(token) {
                    running[s].finish = .stop
                } else if running[s].output.count >= running[s].maxTokens || running[s].length >= config.maxPositions {
                    running[s].finish = .length
                }
                if running[s].finish != nil { allocator.release(&running[s].blocks) }
            }
            if running.contains(where: { $0.finish != nil }) {
                finished += running.filter { $0.finish != nil }
                running = running.filter { $0.finish == nil }
            }
            withExtendedLifetime(hostLogits) {}
        }

        var result = prompts.map { _ in [Completion?](repeating: nil, count: params.n) }
        for seq in finished {
            result[seq.request][seq.sample] = Completion(tokenIds: seq.output, logprobs: seq.logprobs, finishReason: seq.finish!)
        }
        return result.map { $0.map { $0! } }
    }
}

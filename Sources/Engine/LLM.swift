import Collectives
import Cluster
import Compute
import Foundation
import Models
import WeightSync

/// One generated completion of a request, as vLLM's `CompletionOutput`.
public struct CompletionOutput: Sendable, Codable, Equatable {
    public var index: Int
    public var text: String?
    public var tokenIds: [Int32]
    /// Log-probability of each generated token under the model (raw, before sampling transforms).
    public var logprobs: [Float]
    public var finishReason: FinishReason
}

/// The completions of one prompt, as vLLM's `RequestOutput`.
public struct RequestOutput: Sendable, Codable, Equatable {
    public var prompt: String?
    public var promptTokenIds: [Int32]
    public var outputs: [CompletionOutput]
}

/// An LLM engine: one worker process per tensor-parallel rank, each holding its shard of the model,
/// placed on a placement group's bundles with a fraction of each bundle's device — vLLM's
/// `LLM(model, tensor_parallel_size=2, gpu_memory_utilization=0.4)` with
/// `VLLM_RAY_BUNDLE_INDICES=0,1` and `VLLM_RAY_PER_WORKER_GPUS=0.4`.
public final class LLM: Sendable {
    public let modelDirectory: String
    public let tensorParallelSize: Int
    public let ranks: ActorGroup
    public let tokenizer: Tokenizer?
    public let config: ModelConfig
    /// Whether the ranks are on GPUs (collectives through NCCL).
    private let onGPUs: Bool
    /// The all-reduce segment the ranks share; owned here so it lives as long as the engine.
    private let allReduceSegment: HostMemory?
    /// `monotonicNanoseconds()` when the initialiser was called, when it began to start the worker
    /// processes (after reading the config and tokenizer), and when it returned: with the ranks'
    /// reports, ``startupBreakdown()``.
    public let initCalledAt: UInt64
    public let initSpawnedAt: UInt64
    public let initReturnedAt: UInt64

    /// Starts the engine's ranks: rank i at `placement.bundleIndices[i]` of `placement.group`, with
    /// `workerFraction` of that bundle's device, allowed `memoryUtilization` of the device's memory.
    /// `extension` lists worker extensions (registered in the worker executable) to load on every rank.
    public convenience init(
        cluster: Cluster, model: String, tensorParallelSize: Int = 1,
        placement: (group: PlacementGroup, bundleIndices: [Int]), workerFraction: Double = 1,
        memoryUtilization: Double = 0.9, extension extensions: [any WorkerExtension.Type] = [],
        dtype: DType = .f32, name: String = "llm"
    ) async throws {
        guard placement.bundleIndices.count == tensorParallelSize else {
            throw EngineError("tensor-parallel size \(tensorParallelSize) needs \(tensorParallelSize) bundle indices, got \(placement.bundleIndices)")
        }
        let placements: [ActorPlacement?] = placement.bundleIndices.map {
            ActorPlacement(group: placement.group, bundleIndex: $0, deviceFraction: workerFraction)
        }
        try await self.init(cluster: cluster, model: model, placements: placements, memoryUtilization: memoryUtilization,
                            extensions: extensions.map { $0.name }, dtype: dtype, name: name)
    }

    /// Starts one rank per entry of `placements` (tensor-parallel size = `placements.count`).
    public init(
        cluster: Cluster, model: String, placements: [ActorPlacement?], memoryUtilization: Double = 0.9,
        extensions: [String] = [], dtype: DType = .f32, name: String = "llm", blockSize: Int = 16,
        maxBatchedTokens: Int = 2048, maxSequences: Int = 64
    ) async throws {
        let calledAt = monotonicNanoseconds()
        let tp = placements.count
        guard tp >= 1 else { throw EngineError("an engine needs at least one rank") }
        guard memoryUtilization > 0, memoryUtilization <= 1 else {
            throw EngineError("memory utilization must be in (0, 1], got \(memoryUtilization)")
        }
        let bundles = placements.compactMap { $0.map { "\($0.bundleIndex)" } }
        guard Set(bundles).count == bundles.count else {
            throw EngineError("tensor-parallel ranks must be on different bundles, got bundle indices \(bundles.joined(separator: ","))")
        }
        let directory = URL(fileURLWithPath: model).standardizedFileURL.path
        config = try ModelConfig.load(directory: directory)
        try ParameterTable.validate(config: config, tensorParallelSize: tp)
        let tokenizerPath = directory + "/tokenizer.json"
        tokenizer = FileManager.default.fileExists(atPath: tokenizerPath) ? try Tokenizer(path: tokenizerPath) : nil

        // GPUs all-reduce through NCCL, CPU devices through a shared segment. Locally the driver makes the
        // id or the segment before the ranks start; on Ray the ranks join after starting, with a segment or
        // id made on their host (the driver's may not be theirs, nor have NCCL).
        let onGPUs = placements.contains { p in p.map { $0.group.bundleDevices[$0.bundleIndex]?.kind == .cuda } ?? false }
        guard onGPUs || tp <= SharedMemoryAllReduce.maxRanks else {
            throw EngineError("tensor-parallel size \(tp) exceeds the \(SharedMemoryAllReduce.maxRanks) ranks the CPU all-reduce supports")
        }
        let joinLater = tp > 1 && cluster.isRay
        let ncclID: [UInt8]? = tp > 1 && onGPUs && !joinLater ? try NCCLCommunicator.uniqueID() : nil
        var segmentHandle: MemoryHandle?
        var segment: HostMemory?
        let slotFloats = max(maxBatchedTokens, 1) * config.hiddenSize
        if tp > 1 && !onGPUs && !joinLater {
            let made = try SharedMemoryAllReduce.createSegment(worldSize: tp, slotFloats: slotFloats)
            segmentHandle = try SharedMemoryAllReduce.handle(of: made)
            segment = made
        }
        var workerConfig = EngineWorkerConfig(
            modelDirectory: directory, dtype: dtype, memoryUtilization: memoryUtilization, blockSize: blockSize,
            maxBatchedTokens: maxBatchedTokens, maxSequences: maxSequences, allReduceSegment: segmentHandle,
            allReduceSlotFloats: slotFloats, extensions: extensions,
            capacityForSizing: placements.compactMap { p in p.flatMap { $0.group.bundleDevices[$0.bundleIndex]?.capacity } }.min(),
            ncclUniqueID: ncclID,
            cpuThreads: max(1, ProcessInfo.processInfo.activeProcessorCount / tp))
        workerConfig.joinsAllReduceLater = joinLater ? true : nil
        let spawnedAt = monotonicNanoseconds()
        let ranks = try await cluster.spawnGroup(actorType: EngineWorker.typeName, config: workerConfig, placements: placements, name: name)
        if joinLater {
            do {
                segment = try await Self.joinTensorParallel(ranks, onGPUs: onGPUs, slotFloats: slotFloats, name: name)
            } catch {
                for rank in ranks.ranks { rank.kill() }
                throw error
            }
        }
        self.ranks = ranks
        allReduceSegment = segment
        modelDirectory = directory
        tensorParallelSize = tp
        self.onGPUs = onGPUs
        initCalledAt = calledAt
        initSpawnedAt = spawnedAt
        initReturnedAt = monotonicNanoseconds()
    }

    /// Joins started ranks to their all-reduce: an NCCL id from rank 0 on GPUs; on CPU devices a segment
    /// made by the driver when the ranks share its host (it keeps it: returned), else by rank 0 on theirs.
    private static func joinTensorParallel(_ ranks: ActorGroup, onGPUs: Bool, slotFloats: Int, name: String) async throws -> HostMemory? {
        let tp = ranks.ranks.count
        var join = JoinTensorParallel(slotFloats: slotFloats)
        var kept: HostMemory?
        if onGPUs {
            join.ncclUniqueID = try await ranks.ranks[0].call(MakeTensorParallelNCCLID())
        } else {
            let driverHost = WorkerEnvironment.hostIdentity
            let hosts = Set(ranks.ranks.map { $0.address.host ?? driverHost })
            guard hosts.count == 1, let host = hosts.first else {
                throw EngineError("the \(tp) ranks of engine '\(name)' landed on \(hosts.count) hosts (\(hosts.sorted().joined(separator: ", "))); "
                    + "a tensor-parallel engine on CPU devices needs its ranks on one host: pack its bundles")
            }
            if host == driverHost {
                let made = try SharedMemoryAllReduce.createSegment(worldSize: tp, slotFloats: slotFloats)
                join.segment = try SharedMemoryAllReduce.handle(of: made)
                kept = made
            } else {
                join.segment = try await ranks.ranks[0].call(MakeTensorParallelSegment(worldSize: tp, slotFloats: slotFloats))
            }
        }
        // NCCL's init returns only when every rank has joined: the joins run concurrently.
        _ = try await ranks.callAll(join)
        return kept
    }

    /// Runs `call` on every rank (vLLM's `collective_rpc`); one reply per rank, in rank order.
    public func collectiveRPC<C: RemoteCall>(_ call: C) async throws -> [C.Reply] {
        try await ranks.callAll(call)
    }

    /// Generates for text prompts (needs tokenizer.json in the model directory). `addSpecialTokens`
    /// false tokenizes without the post-processor's tokens: for prompts a chat template rendered, which
    /// already hold them (vLLM's `chat`).
    public func generate(_ prompts: [String], _ params: SamplingParams = SamplingParams(),
                         addSpecialTokens: Bool = true) async throws -> [RequestOutput] {
        guard let tokenizer else { throw EngineError("\(modelDirectory) has no tokenizer.json; pass token ids instead") }
        let ids = prompts.map { tokenizer.encode($0, addSpecialTokens: addSpecialTokens) }
        var outputs = try await generate(promptTokenIds: ids, params)
        for i in outputs.indices { outputs[i].prompt = prompts[i] }
        return outputs
    }

    /// Generates for tokenised prompts.
    public func generate(promptTokenIds prompts: [[Int32]], _ params: SamplingParams = SamplingParams()) async throws -> [RequestOutput] {
        try params.validate()
        var params = params
        // Every rank must draw the same random numbers: the driver fixes the seed.
        if params.seed == nil { params.seed = UInt64.random(in: .min ... .max) }
        // A rank whose weights a sync left incomplete refuses to generate; alone, it would leave its
        // peers waiting in an all-reduce. Asking every rank first turns that into a clean refusal.
        if ranks.ranks.count > 1 {
            _ = try await weightVersions()
            // The same for sleep: every rank asleep or awake alike, or nobody starts.
            if let refusal = try await collectiveRPC(CheckGenerationReady()).compactMap({ $0 }).first {
                throw EngineError(EngineError.Code(rawValue: refusal.code), refusal.message)
            }
        }
        let perRank = try await generateOnEveryRank(GenerateTokens(prompts: prompts, params: params))
        guard perRank.allSatisfy({ $0 == perRank[0] }) else {
            throw EngineError(.ranksDisagree, "tensor-parallel ranks of \(ranks.name) produced different tokens")
        }
        return try zip(prompts, perRank[0]).map { prompt, completions in
            RequestOutput(prompt: nil, promptTokenIds: prompt, outputs: try completions.enumerated().map { i, c in
                CompletionOutput(index: i, text: try tokenizer?.decode(c.tokenIds), tokenIds: c.tokenIds,
                                 logprobs: c.logprobs, finishReason: c.finishReason)
            })
        }
    }

    /// Runs a step on every rank. Ranks meet in all-reduces, so when one dies (or fails alone on a GPU,
    /// where NCCL would wait for it forever) the others cannot finish: the engine's ranks are stopped
    /// and the error says so, instead of the call hanging.
    private func generateOnEveryRank(_ call: GenerateTokens) async throws -> [[[Completion]]] {
        let ranks = self.ranks.ranks
        return try await withThrowingTaskGroup(of: (Int, [[Completion]]).self) { group in
            for (i, rank) in ranks.enumerated() { group.addTask { (i, try await rank.call(call)) } }
            var out = [[[Completion]]?](repeating: nil, count: ranks.count)
            do {
                for try await (i, reply) in group { out[i] = reply }
            } catch {
                // A bad request fails identically on every rank (a RemoteError each): nobody waits. A dead
                // rank, or one rank's failure on GPUs, leaves its peers inside a collective.
                if ranks.count > 1, !onGPUs, !(error is ActorDiedError), let segment = allReduceSegment,
                   await Self.peersStillRunning(in: &group, afterFailureOf: ranks.count, settled: out.compactMap { $0 }.count + 1) {
                    // A rank failed alone on CPU devices: its peers wait in the shared all-reduce. Abort it,
                    // so they fail too instead of holding up every later call; the engine must be restarted.
                    SharedMemoryAllReduce.abort(segment: segment, failedRank: 0)
                    group.cancelAll()
                    throw EngineError(.rankFailed, "\(error); it failed on some tensor-parallel ranks of \(self.ranks.name) while others were generating: the engine's all-reduce was aborted, restart the engine")
                }
                if ranks.count > 1 && (error is ActorDiedError || onGPUs) {
                    for rank in ranks { rank.kill() }
                    group.cancelAll()
                    throw EngineError(.rankFailed, "\(error); engine \(self.ranks.name) was stopped: its other ranks were waiting for the failed one in an all-reduce")
                }
                // An engine refusal (asleep, incomplete weights…) reaches the caller as the EngineError it
                // is, with its code, as with tensor-parallel ranks (CheckGenerationReady).
                if let remote = error as? RemoteError, let engineError = EngineError(remote) { throw engineError }
                throw error
            }
            return out.map { $0! }
        }
    }

    /// After one rank's call failed: waits up to a few seconds for the other ranks' calls to end. Ranks
    /// refusing the same bad request all answer at once; true when some rank is still running then
    /// (inside a collective, waiting for the one that failed).
    private static func peersStillRunning(in group: inout ThrowingTaskGroup<(Int, [[Completion]]), any Error>,
                                          afterFailureOf count: Int, settled: Int) async -> Bool {
        group.addTask {
            try await Task.sleep(for: .seconds(5))
            return (-1, [])
        }
        var settled = settled
        while settled < count, let result = await group.nextResult() {
            if case .success((let i, _)) = result, i == -1 { return true }
            settled += 1
        }
        return false
    }

    /// What each rank set itself up with (device, budget, KV cache).
    public func describe() async throws -> [DescribeRank.Reply] { try await collectiveRPC(DescribeRank()) }

    /// Where the time of this engine's initialiser went (worker processes, device, weights, KV cache),
    /// from `ranks`' reports (``describe()``'s, asked for when nil). Nil when a rank does not report its start.
    public func startupBreakdown(ranks: [DescribeRank.Reply]? = nil) async throws -> EngineStartupBreakdown? {
        var reports = ranks ?? []
        if ranks == nil { reports = try await describe() }
        let startups = reports.compactMap(\.startup)
        guard startups.count == reports.count else { return nil }
        return EngineStartupBreakdown(calledAt: initCalledAt, spawnedAt: initSpawnedAt, returnedAt: initReturnedAt, ranks: startups)
    }

    /// The weight version each rank serves, in rank order (complete syncs so far; see
    /// `DescribeRank.Reply.weightVersion`). Throws when a rank holds incomplete weights (a trainer
    /// died mid-push), naming it.
    public func weightVersions() async throws -> [Int] {
        let ranks = try await describe()
        if let torn = ranks.first(where: { !$0.weightsComplete }) {
            throw EngineError(.incompleteWeights, "engine rank \(torn.rank) holds incomplete weights (a weight sync did not finish); sync the weights again")
        }
        return ranks.map(\.weightVersion)
    }

    /// Stops every rank.
    public func shutdown() async { await ranks.stop() }
}

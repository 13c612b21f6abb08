import Collectives
import Cluster
import Compute
import Foundation
import Models
import Synchronization
import WeightSync

/// How to start one engine rank. Sent by `LLM` to each of its worker processes.
public struct EngineWorkerConfig: Codable, Sendable {
    public var modelDirectory: String
    public var dtype: DType
    public var memoryUtilization: Double
    public var blockSize: Int
    /// Most tokens in one step (vLLM's `max_num_batched_tokens`); sizes the workspace.
    public var maxBatchedTokens: Int
    /// Most sequences in one step (vLLM's `max_num_seqs`); sizes the logits workspace.
    public var maxSequences: Int
    /// Shared-memory all-reduce segment made by the driver (tensor parallelism on CPU devices).
    public var allReduceSegment: MemoryHandle?
    public var allReduceSlotFloats: Int
    /// Worker extensions to load, by registered name.
    public var extensions: [String]
    /// The smallest device capacity among the engine's ranks: every rank sizes its KV cache from it, so
    /// all ranks hold the same number of blocks and take the same scheduling decisions.
    public var capacityForSizing: Int?
    /// NCCL unique id made by the driver (tensor parallelism on GPUs).
    public var ncclUniqueID: [UInt8]?
    /// The ranks start without their all-reduce and join it afterwards (``JoinTensorParallel``), with a
    /// segment or NCCL id made on their own host: on a Ray cluster, where the driver's host need not be
    /// theirs. Nil or false: the segment or id above, made by the driver.
    public var joinsAllReduceLater: Bool?
    /// CPU threads for this rank's kernels: the ranks of an engine share the host's cores instead of
    /// each spinning a thread per core (`COLOCATE_CPU_THREADS` in the environment wins).
    public var cpuThreads: Int
}

/// One engine rank's live state: its shard of the model, its cache and generator, and what worker
/// extensions need to reach (weights, device, rank).
public final class EngineWorkerState: @unchecked Sendable {
    public let config: EngineWorkerConfig
    public let device: Device
    public let rank: Int
    public let worldSize: Int
    public let model: TransformerModel
    public let table: ParameterTable
    public let generator: Generator
    public let importer: any WeightImporting
    public let budget: MemoryBudget
    /// The op set this rank runs on (CPU, or CUDA on its GPU).
    public let backend: any ComputeBackend
    /// The one buffer holding every shard (shared memory of a CPU device, one allocation on a GPU): a
    /// pull sync is then a few large copies, and trainers can push into it (``weightDestination``).
    public let flatWeights: any ExportableWeightBuffer
    /// Held while generating, and by a trainer while it pushes into ``flatWeights``.
    public let writeGate: WeightWriteGate
    /// What a sleep released (see EngineSleep.swift).
    let sleep = Mutex(SleepState())
    /// The all-reduce of a tensor-parallel engine (joined at start or by ``JoinTensorParallel``).
    let tensorParallel: TensorParallelLink
    /// The CPU all-reduce of a tensor-parallel engine, to abort peers when this rank's step fails.
    var sharedAllReduce: SharedMemoryAllReduce? { tensorParallel.shared }
    /// When this rank reached each stage of its start (``DescribeRank``'s `startup`).
    public let startup: RankStartup

    public var weights: [String: Tensor] { model.weights }

    init(config: EngineWorkerConfig, context: WorkerContext) throws {
        let initStarted = monotonicNanoseconds()
        guard let device = context.device else {
            throw EngineError("engine rank \(context.rank) was placed without a device")
        }
        self.config = config
        self.device = device
        let rank = context.rank, worldSize = context.worldSize
        self.rank = rank
        self.worldSize = worldSize
        if getenv("COLOCATE_CPU_THREADS") == nil { setenv("COLOCATE_CPU_THREADS", String(config.cpuThreads), 1) }
        var sizing = device
        if let smallest = config.capacityForSizing { sizing.capacity = min(device.capacity, smallest) }
        var budget = try MemoryBudget(device: sizing, utilization: config.memoryUtilization)
        let rankName = "engine rank \(rank)"
        let cuda: CUDABackend?
        let backend: any ComputeBackend
        switch device.kind {
        case .cpu:
            cuda = nil
            backend = CPUBackend(device: device)
        case .cuda:
            // The process sees only its bundle's GPU; find it by UUID, never by ordinal.
            let gpu = try CUDA.load().device(uuid: device.uuid)
            cuda = try CUDABackend(device: gpu, memoryUtilization: config.memoryUtilization)
            // Every decode step allocates its activations anew: reuse blocks instead of cuMemAlloc and a
            // synchronising cuMemFree per tensor.
            cuda!.cachesAllocations = true
            backend = cuda!
        }
        self.backend = backend
        let deviceReady = monotonicNanoseconds()

        // Weights: check the budget before reading anything.
        let modelConfig = try ModelConfig.load(directory: config.modelDirectory)
        // A config claiming more layers than the checkpoint holds fails here, before a table of them is built.
        try ModelLoader.checkLayers(config: modelConfig, checkpoint: try Checkpoint(directory: config.modelDirectory))
        try ParameterTable.validate(config: modelConfig, tensorParallelSize: worldSize)
        let table = ParameterTable(config: modelConfig)
        let weightBytes = table.specs.reduce(0) {
            $0 + $1.shard.shardShape(of: $1.shape, worldSize: worldSize).reduce(1, *) * config.dtype.byteSize
        }
        try budget.charge(weightBytes, for: "\(rankName): the \(config.dtype) weights")
        let layout = WeightLayout(shardsOf: table, dtype: config.dtype, worldSize: worldSize)
        let flatWeights: any ExportableWeightBuffer = try cuda.map { try CUDAWeightBuffer(layout: layout, allocator: $0.allocator) }
            ?? SharedWeightBuffer(layout: layout, device: device, name: "colocate-engine-weights")
        self.flatWeights = flatWeights
        let views = flatWeights.tensors
        let (_, weights) = try ModelLoader.load(directory: config.modelDirectory, dtype: config.dtype,
                                                rank: rank, worldSize: worldSize, backend: backend) { name, shape, dtype in
            guard let view = views[name], view.shape == shape, view.dtype == dtype else {
                throw EngineError("\(rankName): the checkpoint's \(name) (\(dtype) \(shape)) is not a parameter of the model's table")
            }
            return view
        }
        let weightsLoaded = monotonicNanoseconds()

        // All-reduce between ranks: NCCL on GPUs, the driver's shared segment on CPU devices; or joined
        // later (JoinTensorParallel) when the driver's host may not be this rank's.
        let link = TensorParallelLink(rankName: rankName)
        if worldSize > 1 && config.joinsAllReduceLater != true {
            try link.connect(backend: backend, rank: rank, worldSize: worldSize, segment: config.allReduceSegment,
                             slotFloats: config.allReduceSlotFloats, ncclUniqueID: config.ncclUniqueID)
        }
        tensorParallel = link
        let allReduce: AllReduce? = worldSize > 1 ? { @Sendable t in try link(t) } : nil
        model = try TransformerModel(config: modelConfig, weights: weights, backend: backend,
                                     rank: rank, worldSize: worldSize, allReduce: allReduce)

        // Workspace for one step's activations (and the largest shard, for weight comparisons), then
        // the KV cache from what is left — at most what `maxSequences` sequences of the longest length use.
        let h = modelConfig.hiddenSize, f = modelConfig.intermediateSize / worldSize
        let q = modelConfig.numHeads * modelConfig.headDim / worldSize
        let largestShard = table.specs.map { $0.shard.shardShape(of: $0.shape, worldSize: worldSize).reduce(1, *) }.max() ?? 0
        let workspace = config.maxBatchedTokens * 4 * (6 * h + 2 * f + 4 * q) + config.maxSequences * modelConfig.vocabSize * 4 * 2
            + largestShard * config.dtype.byteSize
        try budget.charge(workspace, for: "\(rankName): activation workspace for \(config.maxBatchedTokens) tokens")
        let perBlock = model.cacheBytesPerBlock(blockSize: config.blockSize)
        let maxLength = min(modelConfig.maxPositions, 2048)
        let blocksPerSequence = (maxLength + config.blockSize - 1) / config.blockSize
        let blocks = min(budget.remaining / perBlock, blocksPerSequence * config.maxSequences)
        guard blocks >= blocksPerSequence else {
            throw EngineError("\(rankName): the KV cache needs \(MemoryBudget.format(blocksPerSequence * perBlock)) for one sequence of \(maxLength) tokens but \(MemoryBudget.format(budget.remaining)) of the budget remain after weights and workspace (\(budget)); raise the memory utilization")
        }
        try budget.charge(blocks * perBlock, for: "\(rankName): KV cache")
        let cache = try model.makeCache(blockSize: config.blockSize, numBlocks: blocks,
                                        storage: try Self.cacheStorage(bytes: blocks * perBlock, backend: backend))
        generator = Generator(model: model, cache: cache, maxBatchTokens: config.maxBatchedTokens, maxSequences: config.maxSequences)
        importer = WeightImporters.make(for: backend)
        writeGate = try WeightWriteGate()
        self.table = table
        self.budget = budget
        startup = RankStartup(initStarted: initStarted, deviceReady: deviceReady, weightsLoaded: weightsLoaded, ready: monotonicNanoseconds())
    }

    /// The KV cache's one allocation: on a GPU a `cuMemCreate` allocation where the device has them, so
    /// that a sleep can release its memory and a wake map new memory at the same addresses.
    static func cacheStorage(bytes: Int, backend: any ComputeBackend) throws -> Tensor {
        let floats = bytes / DType.f32.byteSize
        guard let cuda = backend as? CUDABackend else { return try backend.zeros([floats], dtype: .f32) }
        let sharing: CUDAMemorySharing = cuda.cudaDevice.properties.supportsFileDescriptorSharing ? .fileDescriptor : .ipc
        let buffer = try cuda.allocator.allocate(byteCount: bytes, sharing: sharing)
        try buffer.fill(byte: 0)
        return buffer.tensor(dtype: .f32, shape: [floats])
    }

    /// This rank's weights as a place a trainer on the same device can write (push sync).
    public func weightDestination() throws -> WeightDestination {
        WeightDestination(exported: try flatWeights.export(), rank: rank, worldSize: worldSize, gate: try writeGate.handle())
    }
}

/// A worker process hosting one engine rank (the `colocate worker` side of `LLM`). Its calls run one
/// at a time in arrival order (the actor mailbox), so a weight update never lands inside a step.
public final class EngineWorker: ClusterActor {
    public typealias Config = EngineWorkerConfig
    public static let typeName = "EngineWorker"

    public let state: EngineWorkerState
    private let extensions: [any WorkerExtension]

    public init(config: EngineWorkerConfig, context: WorkerContext) async throws {
        // Loading the model and sizing the cache wait on the device: off the concurrency pool.
        let state = try await BlockingWork.run(name: "colocate.engine-init") { try EngineWorkerState(config: config, context: context) }
        self.state = state
        extensions = try (["colocate"] + config.extensions.filter { $0 != "colocate" }).map { name in
            try WorkerExtensions.lookup(name).init(worker: state)
        }
    }

    public func handlers(into handlers: inout Handlers) {
        let state = self.state
        handlers.on(GenerateTokens.self) { call, _ in
            do {
                // A push (which writes these weights without this process) waits for the generation, and
                // a generation for a push: a few milliseconds at most, unless the trainer is stuck.
                // The gate's futex wait and the device's work block a thread: not one of the pool's.
                return try await BlockingWork.run(name: "colocate.generate") {
                    try state.writeGate.holding(.generation, timeout: .seconds(60), what: "cannot generate on engine rank \(state.rank)") {
                        try state.checkAwake()
                        try state.writeGate.requireCompleteWeights("cannot generate on engine rank \(state.rank)")
                        return try state.generator.generate(prompts: call.prompts, params: call.params)
                    }
                }
            } catch let error as ModelError {
                // Bad requests fail identically on every rank before any all-reduce: nobody waits.
                throw error
            } catch let error as EngineError {
                // So does a sleeping engine.
                throw error
            } catch {
                // A failure of this rank alone: peers may be waiting in an all-reduce for it.
                state.sharedAllReduce?.abort()
                throw error
            }
        }
        handlers.on(JoinTensorParallel.self) { call, _ in
            // NCCL's init blocks until every rank joins: not on one of the pool's threads.
            try await BlockingWork.run(name: "colocate.join-tensor-parallel") { try state.join(call) }
        }
        handlers.on(MakeTensorParallelSegment.self) { call, _ in try state.makeSegment(call) }
        handlers.on(MakeTensorParallelNCCLID.self) { _, _ in try NCCLCommunicator.uniqueID() }
        handlers.on(DescribeRank.self) { _, _ in
            DescribeRank.Reply(rank: state.rank, worldSize: state.worldSize, device: state.device, pid: getpid(),
                               weightBytes: state.weights.values.reduce(0) { $0 + $1.byteCount },
                               kvCacheBlocks: state.generator.cache.numBlocks, blockSize: state.generator.cache.blockSize,
                               budgetBytes: state.budget.limit, usedBytes: state.budget.used, weightDType: state.config.dtype,
                               weightVersion: state.writeGate.version, weightsComplete: state.writeGate.incompleteWriterPID == nil,
                               startup: state.startup, allReduceSegmentOwner: state.tensorParallel.segmentOwner)
        }
        handlers.on(CheckGenerationReady.self) { _, _ in
            do {
                try state.checkAwake()
                return nil
            } catch let error as EngineError {
                return CheckGenerationReady.Refusal(code: error.code.rawValue, message: error.message)
            }
        }
        handlers.on(SleepRank.self) { call, _ in
            try await BlockingWork.run(name: "colocate.sleep") { try state.sleep(level: call.level) }
        }
        handlers.on(WakeRank.self) { call, _ in
            try await BlockingWork.run(name: "colocate.wake") { try state.wake(tags: call.tags) }
        }
        for e in extensions { e.handlers(into: &handlers) }
    }
}

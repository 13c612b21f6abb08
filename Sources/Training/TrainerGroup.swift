import Cluster
import Collectives
import Compute
import Foundation
import Models
import WeightSync

/// A data-parallel group of trainer actors, driven from the driver: one ``TrainerActor`` per bundle of
/// a placement group (each with `deviceFraction` of its device), every one holding the whole model and
/// its own ``TrainerSession``. A step sends each rank its shard of the global batch; the ranks
/// all-reduce their gradients (shared memory on virtual CPU devices, NCCL on GPUs) and apply the same
/// update, so their weights stay identical.
public final class TrainerGroup: @unchecked Sendable {
    public let trainers: [ActorRef]
    public let modelDirectory: String
    public let config: ModelConfig
    /// The shared-memory all-reduce segment on CPU devices, owned here so it lives as long as the group.
    private let segment: HostMemory?

    public var worldSize: Int { trainers.count }

    /// The CPU all-reduce's slot: gradients are reduced in chunks of at most this many floats (16 MiB).
    public static let maxSlotFloats = 1 << 22

    /// Spawns one trainer per entry of `bundles` in `group`, loads `weightsDirectory` (the model, or a
    /// checkpoint of it) on each and joins them into one data-parallel group. `modelDirectory` is the
    /// model the group trains (its config and tokenizer go into checkpoints).
    public init(cluster: Cluster, group: PlacementGroup, bundles: [Int], modelDirectory: String,
                weightsDirectory: String? = nil, deviceFraction: Double = 0.4, name: String = "trainer") async throws {
        precondition(!bundles.isEmpty)
        let config = try ModelConfig.load(directory: modelDirectory)
        let world = bundles.count
        let onGPUs = bundles.contains { group.bundleDevices[$0]?.kind == .cuda }
        var joins = (0..<world).map { JoinTrainerGroup(rank: $0, worldSize: world) }
        var segment: HostMemory?
        if world > 1 {
            if onGPUs {
                let id = try NCCLCommunicator.uniqueID()
                for r in 0..<world { joins[r].ncclUniqueID = id }
            } else {
                guard world <= SharedMemoryAllReduce.maxRanks else {
                    throw TrainingError("\(world) trainers exceed the \(SharedMemoryAllReduce.maxRanks) ranks the CPU all-reduce supports")
                }
                let floats = WeightLayout(table: ParameterTable(config: config), dtype: .f32).totalBytes / 4
                let slot = min(floats, Self.maxSlotFloats)
                let memory = try SharedMemoryAllReduce.createSegment(worldSize: world, slotFloats: slot)
                let identity = try SharedMemoryIdentity.of(fileDescriptor: memory.sharedFileDescriptor!)
                let handle = MemoryHandle(deviceUUID: Device.host.uuid, kind: .cpuSharedMemory, byteCount: memory.byteCount,
                                          offset: 0, opaque: identity.bytes, ownerPID: identity.pid)
                for r in 0..<world {
                    joins[r].segment = handle
                    joins[r].slotFloats = slot
                }
                segment = memory
            }
        }
        let weights = weightsDirectory ?? modelDirectory
        let joinCalls = joins
        trainers = try await withThrowingTaskGroup(of: (Int, ActorRef).self) { tasks in
            for (rank, bundle) in bundles.enumerated() {
                tasks.addTask {
                    let placement = ActorPlacement(group: group, bundleIndex: bundle, deviceFraction: deviceFraction)
                    let ref = try await cluster.spawn(actorType: TrainerActor.typeName, placement: placement, name: "\(name)-\(rank)")
                    _ = try await ref.call(LoadModel(directory: weights))
                    // NCCL's init blocks until every rank joins: the joins run concurrently.
                    _ = try await ref.call(joinCalls[rank])
                    return (rank, ref)
                }
            }
            var refs = [ActorRef?](repeating: nil, count: world)
            for try await (rank, ref) in tasks { refs[rank] = ref }
            return refs.map { $0! }
        }
        self.modelDirectory = modelDirectory
        self.config = config
        self.segment = segment
    }

    /// Sends `calls[i]` to rank i concurrently; replies in rank order; throws the first error.
    public func callEach<C: RemoteCall>(_ calls: [C]) async throws -> [C.Reply] {
        precondition(calls.count == trainers.count)
        return try await withThrowingTaskGroup(of: (Int, C.Reply).self) { tasks in
            for (i, t) in trainers.enumerated() {
                let call = calls[i]
                tasks.addTask { (i, try await t.call(call)) }
            }
            var replies = [C.Reply?](repeating: nil, count: trainers.count)
            for try await (i, reply) in tasks { replies[i] = reply }
            return replies.map { $0! }
        }
    }

    public func callAll<C: RemoteCall>(_ call: C) async throws -> [C.Reply] {
        try await callEach(Array(repeating: call, count: trainers.count))
    }

    /// Makes every rank's session (AdamW at step 0).
    public func configure(_ call: ConfigureOptimizer) async throws {
        _ = try await callAll(call)
    }

    /// Restores every rank's optimizer from the checkpoint its weights were loaded from; returns the step.
    public func loadCheckpoint(_ directory: String) async throws -> Int {
        try await callAll(LoadCheckpoint(directory: directory))[0].step
    }

    /// One optimizer step: rank r trains on `shards[r]` (its micro-batches). The loss is the sum over
    /// ranks (the step's mean when the weights are normalised globally), tokens too; the gradient norm
    /// is the global one every rank computed after the all-reduce.
    public func step(_ shards: [[MicroBatch]]) async throws -> StepStats {
        let replies = try await callEach(shards.map { TrainStep(microBatches: $0) })
        var stats = replies[0]
        stats.loss = replies.reduce(0) { $0 + $1.loss }
        stats.tokens = replies.reduce(0) { $0 + $1.tokens }
        return stats
    }

    /// Rank 0 writes a checkpoint (every rank holds the same weights).
    public func save(to directory: String, state: TrainerState) async throws {
        _ = try await trainers[0].call(SaveCheckpoint(directory: directory, modelDirectory: modelDirectory, state: state))
    }

    /// Stops the trainers.
    public func stop() {
        for t in trainers { t.kill() }
    }
}

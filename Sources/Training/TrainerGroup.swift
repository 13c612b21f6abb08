import Cluster
import Collectives
import Compute
import Foundation
import Models
import WeightSync

/// A data-parallel group of trainer actors, driven from the driver: one ``TrainerActor`` per bundle of
/// a placement group (each with `deviceFraction` of its device), every one holding the whole model and
/// its own ``TrainerSession``. A step sends each rank its shard of the global batch; the ranks
/// all-reduce their gradients and apply the same update, so their weights stay identical.
///
/// The all-reduce (``transport``): NCCL on GPUs; on virtual CPU devices, a shared-memory segment when
/// every trainer runs on one host (the driver makes it on its own host, rank 0 on another, such as a
/// Ray node), else (trainers on several hosts) ``ControlPlaneAllReduce`` through rank 0 — slower, and
/// bitwise the same sums (both add in rank order).
public final class TrainerGroup: @unchecked Sendable {
    /// How the ranks all-reduce their gradients.
    public enum Transport: String, Sendable, Codable {
        /// A single trainer: nothing to reduce.
        case none
        /// A shared-memory segment (CPU devices, every trainer on one host): the driver's, or rank 0's.
        case sharedMemory = "shared-memory"
        /// Frames to rank 0 and back over the control plane (CPU devices on other hosts).
        case controlPlane = "control-plane"
        /// NCCL (GPUs).
        case nccl
    }

    public let trainers: [ActorRef]
    public let modelDirectory: String
    public let config: ModelConfig
    public let transport: Transport
    /// The name of the control-plane all-reduce, the same on every rank.
    public let allReduceName: String
    /// The shared-memory all-reduce segment on CPU devices, owned here so it lives as long as the group.
    private let segment: HostMemory?

    public var worldSize: Int { trainers.count }

    /// The hosts the trainers run on, as their workers report them (one entry when they all run on
    /// the driver's host with a Unix control plane).
    public var hosts: Set<String> { Set(trainers.map { $0.address.host ?? WorkerEnvironment.hostIdentity }) }

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
        let weights = weightsDirectory ?? modelDirectory
        // Spawn and load first: where the trainers landed (device kind, host) decides the all-reduce.
        let trainers = try await withThrowingTaskGroup(of: (Int, ActorRef).self) { tasks in
            for (rank, bundle) in bundles.enumerated() {
                tasks.addTask {
                    let placement = ActorPlacement(group: group, bundleIndex: bundle, deviceFraction: deviceFraction)
                    let ref = try await cluster.spawn(actorType: TrainerActor.typeName, placement: placement, name: "\(name)-\(rank)")
                    _ = try await ref.call(LoadModel(directory: weights))
                    return (rank, ref)
                }
            }
            var refs = [ActorRef?](repeating: nil, count: world)
            for try await (rank, ref) in tasks { refs[rank] = ref }
            return refs.map { $0! }
        }
        let onGPUs = trainers.contains { $0.device?.kind == .cuda }
        let driverHost = WorkerEnvironment.hostIdentity
        let hosts = Set(trainers.map { $0.address.host ?? driverHost })
        let allReduceName = "\(name)-gradients"
        var joins = (0..<world).map { JoinTrainerGroup(rank: $0, worldSize: world) }
        var segment: HostMemory?
        var transport = Transport.none
        do {
            if world > 1 && onGPUs {
                // NCCL's bootstrap listens in the process that made the id: on Ray, rank 0 on a GPU
                // host, since the driver's host may have no NCCL or GPU (not tested on many hosts).
                let id = cluster.isRay ? try await trainers[0].call(MakeNCCLUniqueID()).id : try NCCLCommunicator.uniqueID()
                for r in 0..<world { joins[r].ncclUniqueID = id }
                transport = .nccl
            } else if world > 1 && hosts.count == 1 && world <= SharedMemoryAllReduce.maxRanks {
                let floats = WeightLayout(table: ParameterTable(config: config), dtype: .f32).totalBytes / 4
                let slot = min(floats, Self.maxSlotFloats)
                let handle: MemoryHandle
                if hosts.first == driverHost {
                    let memory = try SharedMemoryAllReduce.createSegment(worldSize: world, slotFloats: slot)
                    handle = try SharedMemoryAllReduce.handle(of: memory)
                    segment = memory
                } else {
                    // Another host's trainers cannot map the driver's memory: rank 0 makes the segment there.
                    handle = try await trainers[0].call(MakeGradientSegment(worldSize: world, slotFloats: slot)).segment
                }
                for r in 0..<world {
                    joins[r].segment = handle
                    joins[r].slotFloats = slot
                }
                transport = .sharedMemory
            } else if world > 1 {
                // Trainers on several hosts share no memory (or more ranks than a segment holds):
                // frames through rank 0.
                for r in 0..<world {
                    joins[r].controlPlaneRoot = trainers[0].address
                    joins[r].controlPlaneName = allReduceName
                }
                transport = .controlPlane
            }
            // NCCL's init blocks until every rank joins: the joins run concurrently.
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for (rank, ref) in trainers.enumerated() {
                    let join = joins[rank]
                    tasks.addTask { _ = try await ref.call(join) }
                }
                try await tasks.waitForAll()
            }
        } catch {
            for t in trainers { t.kill() }
            throw error
        }
        self.trainers = trainers
        self.modelDirectory = modelDirectory
        self.config = config
        self.segment = segment
        self.transport = transport
        self.allReduceName = allReduceName
    }

    /// After a rank failed mid-step: tells rank 0 to fail the control-plane all-reduce, so that the
    /// ranks waiting there for the failed one return instead of waiting for it until their deadline.
    /// (The shared-memory all-reduce finds dead peers itself; NCCL has its own timeouts.)
    public func abortAllReduce(reason: String) async {
        guard transport == .controlPlane else { return }
        await ControlPlaneAllReduce.abort(name: allReduceName, rank0: trainers[0], reason: reason)
    }

    /// Sends `calls[i]` to rank i concurrently and waits for every reply (in rank order). When some
    /// fail, the error is the one that says most: a trainer that died, rather than its peers failing
    /// in the all-reduce after it. The first failure aborts the control-plane all-reduce, so the other
    /// ranks return at once rather than at their deadline.
    public func callEach<C: RemoteCall>(_ calls: [C]) async throws -> [C.Reply] {
        precondition(calls.count == trainers.count)
        let results = await withTaskGroup(of: (Int, Result<C.Reply, any Error>).self) { tasks in
            for (i, t) in trainers.enumerated() {
                let call = calls[i]
                tasks.addTask {
                    do { return (i, .success(try await t.call(call))) } catch { return (i, .failure(error)) }
                }
            }
            var out = [Result<C.Reply, any Error>?](repeating: nil, count: calls.count)
            var aborted = false
            for await (i, result) in tasks {
                out[i] = result
                if case .failure(let error) = result, !aborted {
                    aborted = true
                    await abortAllReduce(reason: "\(trainers[i].name) failed: \(error)")
                }
            }
            return out.map { $0! }
        }
        let errors = results.compactMap { r -> (any Error)? in if case .failure(let e) = r { return e } else { return nil } }
        if let died = errors.first(where: { $0 is ActorDiedError }) ?? errors.first { throw died }
        return results.map { try! $0.get() }
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

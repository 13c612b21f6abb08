import Cluster
import Collectives
import Compute
import Foundation

/// Joins the trainer to its data-parallel group: rank `rank` of `worldSize`, all-reducing gradients
/// through a shared-memory segment (virtual CPU devices, every rank on one host: the driver's segment,
/// or rank 0's on another host), the control plane (virtual CPU devices on several hosts:
/// ``ControlPlaneAllReduce`` through rank 0) or NCCL (GPUs, every rank joining with the same unique
/// id, concurrently). A world of 1 needs none.
public struct JoinTrainerGroup: RemoteCall {
    public typealias Reply = Empty
    public static let name = "trainer.joinGroup"
    public var rank: Int
    public var worldSize: Int
    /// The shared-memory all-reduce segment (``SharedMemoryAllReduce``), made by the driver or by rank 0.
    public var segment: MemoryHandle?
    public var slotFloats: Int
    public var ncclUniqueID: [UInt8]?
    /// Rank 0's address, when the CPU all-reduce goes over the control plane.
    public var controlPlaneRoot: ActorAddress?
    /// The name of that all-reduce (the same on every rank; see ``TrainerGroup/allReduceName``).
    public var controlPlaneName: String?

    public init(rank: Int, worldSize: Int, segment: MemoryHandle? = nil, slotFloats: Int = 0, ncclUniqueID: [UInt8]? = nil,
                controlPlaneRoot: ActorAddress? = nil, controlPlaneName: String? = nil) {
        self.rank = rank
        self.worldSize = worldSize
        self.segment = segment
        self.slotFloats = slotFloats
        self.ncclUniqueID = ncclUniqueID
        self.controlPlaneRoot = controlPlaneRoot
        self.controlPlaneName = controlPlaneName
    }
}

/// A shared-memory all-reduce segment made and kept by this trainer (rank 0 of a group whose ranks
/// all run on one host that is not the driver's: a Ray node). Its peers map it as they map the
/// driver's segment; it lives as long as this trainer.
public struct MakeGradientSegment: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var segment: MemoryHandle
    }
    public static let name = "trainer.makeGradientSegment"
    public var worldSize: Int
    public var slotFloats: Int
    public init(worldSize: Int, slotFloats: Int) {
        self.worldSize = worldSize
        self.slotFloats = slotFloats
    }
}

/// A new NCCL unique id made by this trainer (GPUs): rank 0 of a group on Ray makes it, so that NCCL's
/// bootstrap listens on a GPU host with NCCL rather than on the driver's, which may have neither.
public struct MakeNCCLUniqueID: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var id: [UInt8]
    }
    public static let name = "trainer.makeNCCLUniqueID"
    public init() {}
}

/// Makes the trainer's ``TrainerSession`` over its loaded weights (after `LoadModel`, and after
/// `JoinTrainerGroup` when there are several ranks): AdamW state at step 0, the LR schedule, clipping.
public struct ConfigureOptimizer: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var parameters: Int
    }
    public static let name = "trainer.configureOptimizer"
    public var hyper: AdamWHyperparameters
    public var schedule: LearningRateSchedule
    public var maxGradNorm: Float?
    public var recomputeActivations: Bool
    /// bf16-mixed precision (GPUs): see ``TrainerSession``.
    public var mixedPrecision: Bool

    public init(hyper: AdamWHyperparameters, schedule: LearningRateSchedule, maxGradNorm: Float?, recomputeActivations: Bool = false,
                mixedPrecision: Bool = false) {
        self.hyper = hyper
        self.schedule = schedule
        self.maxGradNorm = maxGradNorm
        self.recomputeActivations = recomputeActivations
        self.mixedPrecision = mixedPrecision
    }
}

/// One optimizer step on this rank's micro-batches (its shard of the global batch), cross-entropy with
/// the micro-batches' weights. Every rank of the group must get the call for the same step.
public struct TrainStep: RemoteCall {
    public typealias Reply = StepStats
    public static let name = "trainer.trainStep"
    public var microBatches: [MicroBatch]
    public init(microBatches: [MicroBatch]) { self.microBatches = microBatches }
}

/// Writes a checkpoint of the trainer's weights and optimizer (``Checkpoint``) to `directory`; the
/// config and tokenizer files come from `modelDirectory`. One rank saves (all hold the same weights).
public struct SaveCheckpoint: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var seconds: Double
    }
    public static let name = "trainer.saveCheckpoint"
    public var directory: String
    public var modelDirectory: String
    public var state: TrainerState
    public init(directory: String, modelDirectory: String, state: TrainerState) {
        self.directory = directory
        self.modelDirectory = modelDirectory
        self.state = state
    }
}

/// Restores the optimizer (moments and step count) from a checkpoint whose weights the trainer loaded
/// with `LoadModel(directory:)`; after `ConfigureOptimizer`.
public struct LoadCheckpoint: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var step: Int
    }
    public static let name = "trainer.loadCheckpoint"
    public var directory: String
    public init(directory: String) { self.directory = directory }
}

/// The training half of a trainer actor: its data-parallel all-reduce and its session. Calls run one
/// at a time (the actor mailbox), so plain storage suffices.
final class TrainingBox: @unchecked Sendable {
    var allReduce: GradientAllReduce?
    var sharedAllReduce: SharedMemoryAllReduce?
    /// The all-reduce over the control plane; its steps block the thread that runs them, which must
    /// then be one of their own (`runStep`).
    var controlPlaneAllReduce: ControlPlaneAllReduce?
    /// The segment this trainer made for its group (`MakeGradientSegment`), kept while it lives.
    var ownedSegment: HostMemory?
    var communicator: NCCLCommunicator?
    var session: TrainerSession?

    /// The session, checked to be over the weights loaded now.
    func session(_ weights: WeightsBox) throws -> TrainerSession {
        guard let session, session.weights === weights.value else {
            throw TrainingError("the trainer has no optimizer over its current weights (call ConfigureOptimizer after LoadModel)")
        }
        return session
    }

    func join(_ call: JoinTrainerGroup, weights: WeightsBox, context: WorkerContext) throws -> Empty {
        sharedAllReduce = nil
        controlPlaneAllReduce = nil
        guard call.worldSize > 1 else {
            allReduce = nil
            session?.allReduce = nil
            return Empty()
        }
        let w = try weights.loaded()
        if let cuda = w.cuda {
            guard let id = call.ncclUniqueID else { throw TrainingError("a data-parallel group on GPUs needs an NCCL id") }
            let comm = try NCCLCommunicator(device: cuda.cudaDevice, uniqueID: id, rank: call.rank, rankCount: call.worldSize)
            communicator = comm
            allReduce = { cuda.allReduce($0, communicator: comm) }
        } else if let root = call.controlPlaneRoot {
            let comm = ControlPlaneAllReduce(context: context, name: call.controlPlaneName ?? "trainer-gradients",
                                             rank: call.rank, worldSize: call.worldSize, root: root)
            controlPlaneAllReduce = comm
            allReduce = { tensor in
                precondition(tensor.dtype == .f32 && tensor.isContiguous)
                try comm.sumBlocking(UnsafeMutableBufferPointer(start: tensor.pointer(Float.self), count: tensor.count))
            }
        } else {
            guard let handle = call.segment else { throw TrainingError("a data-parallel group on CPU devices needs an all-reduce segment or rank 0's address") }
            let segment = try HostMemory.map(owning: try SharedMemoryIdentity(bytes: handle.opaque).open(),
                                             byteCount: handle.byteCount, device: .host)
            let comm = SharedMemoryAllReduce(segment: segment, rank: call.rank, worldSize: call.worldSize, slotFloats: call.slotFloats)
            sharedAllReduce = comm
            allReduce = { try comm($0) }
        }
        session?.allReduce = allReduce
        return Empty()
    }

    func makeSegment(_ call: MakeGradientSegment) throws -> MakeGradientSegment.Reply {
        guard call.worldSize >= 2, call.worldSize <= SharedMemoryAllReduce.maxRanks, call.slotFloats >= 1 else {
            throw TrainingError("an all-reduce segment needs 2...\(SharedMemoryAllReduce.maxRanks) ranks and a slot; got \(call.worldSize) ranks, \(call.slotFloats) floats")
        }
        let memory = try SharedMemoryAllReduce.createSegment(worldSize: call.worldSize, slotFloats: call.slotFloats)
        ownedSegment = memory
        return .init(segment: try SharedMemoryAllReduce.handle(of: memory))
    }

    func configure(_ call: ConfigureOptimizer, weights: WeightsBox) throws -> ConfigureOptimizer.Reply {
        let w = try weights.loaded()
        session = nil
        session = try TrainerSession(weights: w, hyper: call.hyper, schedule: call.schedule, maxGradNorm: call.maxGradNorm,
                                     recomputeActivations: call.recomputeActivations, allReduce: allReduce,
                                     mixedPrecision: call.mixedPrecision)
        return .init(parameters: w.table.totalCount)
    }

    func step(_ call: TrainStep, weights: WeightsBox) throws -> StepStats {
        let s = try session(weights)
        do {
            return try s.step(microBatches: call.microBatches.map { ($0.batch, CrossEntropyObjective(weights: $0.weights)) })
        } catch {
            abortAllReduce(error)
            throw error
        }
    }

    /// After a failed step: peers waiting in the all-reduce for this rank wake and fail instead of
    /// waiting forever.
    func abortAllReduce(_ error: any Error) {
        sharedAllReduce?.abort()
        controlPlaneAllReduce?.abort(reason: "a rank's step failed: \(error)")
    }

    /// Runs a step that may all-reduce: on a thread of its own when the all-reduce goes over the
    /// control plane (it blocks while tasks send and answer its frames), else here.
    func runStep<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        guard controlPlaneAllReduce != nil else { return try body() }
        return try await BlockingWork.run(name: "colocate.train-step", body)
    }

    func save(_ call: SaveCheckpoint, weights: WeightsBox) throws -> SaveCheckpoint.Reply {
        let start = ContinuousClock.now
        try session(weights).saveCheckpoint(to: call.directory, modelDirectory: call.modelDirectory, state: call.state)
        return .init(seconds: (ContinuousClock.now - start).inSeconds)
    }

    func load(_ call: LoadCheckpoint, weights: WeightsBox) throws -> LoadCheckpoint.Reply {
        let s = try session(weights)
        try s.restoreOptimizer(from: call.directory)
        return .init(step: s.optimizer.step)
    }
}

#if canImport(Glibc)
import Glibc
#endif

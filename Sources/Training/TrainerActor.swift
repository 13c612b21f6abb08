import Cluster
import Collectives
import Compute
import Foundation
import Models
import WeightSync

/// Loads a Hugging Face model directory onto the trainer's device (f32 master weights by default).
public struct LoadModel: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var parameters: Int
        public var bytes: Int
        public var seconds: Double
    }
    public static let name = "trainer.loadModel"
    public var directory: String
    public var dtype: DType
    public init(directory: String, dtype: DType = .f32) {
        self.directory = directory
        self.dtype = dtype
    }
}

/// Sets every weight to zero (what the seed's training actors do before syncing).
public struct ZeroWeights: RemoteCall {
    public typealias Reply = Empty
    public static let name = "trainer.zeroWeights"
    public init() {}
}

/// Adds seeded noise to every weight (an optimiser step's worth of change, for tests and benchmarks).
public struct PerturbWeights: RemoteCall {
    public typealias Reply = Empty
    public static let name = "trainer.perturbWeights"
    public var seed: UInt64
    public var scale: Float
    public init(seed: UInt64, scale: Float = 0.01) {
        self.seed = seed
        self.scale = scale
    }
}

/// The handle and layout of the trainer's weights (vLLM example: `get_weight_ipc_handles`), keyed by
/// the trainer's device UUID so engines can pick their own device's export.
public struct ExportWeights: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var deviceUUID: String
        public var exported: ExportedWeights
    }
    public static let name = "trainer.exportWeights"
    public init() {}
}

/// The trainer's sync notice (handle, version, layout fingerprint) for engines that already know its
/// layout: what a sync sends after the first.
public struct ExportWeightsNotice: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var deviceUUID: String
        public var notice: WeightSyncNotice
    }
    public static let name = "trainer.exportWeightsNotice"
    public init() {}
}

/// Attaches the trainer to the engine ranks it will push to (push sync): of `destinations` (every
/// rank of every engine, as `ExportWeightDestination` returns them), those on the trainer's own
/// device. Checks and plans each; replaces earlier attachments. Throws when none is on its device.
public struct AttachWeightDestinations: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var deviceUUID: String
        /// Engine ranks attached.
        public var attached: Int
    }
    public static let name = "trainer.attachWeightDestinations"
    public var destinations: [WeightDestination]
    public init(destinations: [WeightDestination]) { self.destinations = destinations }
}

/// Writes the trainer's current weights into every attached engine rank and returns once they are
/// there (push sync: no call to the engines). The engines must be idle meanwhile.
public struct PushWeights: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var deviceUUID: String
        public var bytes: Int
        public var version: UInt64
        /// Time from receiving the call until every attached rank held the new weights.
        public var seconds: Double
        /// When the handler started and ended (``monotonicNanoseconds()``, one clock for the whole
        /// machine): the caller splits its round trip into the way there, the push and the way back.
        public var startedAt: UInt64
        public var endedAt: UInt64
    }
    public static let name = "trainer.pushWeights"
    /// How long to wait for an engine rank that is generating before failing (its ``WeightWriteGate``).
    public var waitSeconds: Double
    public init(waitSeconds: Double = 60) { self.waitSeconds = waitSeconds }
}

/// A training actor: owns a model's weights on its device share and exports them to colocated engines.
public final class TrainerActor: ClusterActor {
    public typealias Config = Empty
    public static let typeName = "Trainer"

    private let context: WorkerContext
    private let weights = WeightsBox()
    private let training = TrainingBox()
    private let rl = RLBox()

    public init(config: Empty, context: WorkerContext) async throws {
        self.context = context
    }

    public func handlers(into handlers: inout Handlers) {
        let context = self.context, box = weights, training = self.training, rl = self.rl
        handlers.on(JoinTrainerGroup.self) { call, _ in try training.join(call, weights: box, context: context) }
        handlers.on(MakeNCCLUniqueID.self) { _, _ in .init(id: try NCCLCommunicator.uniqueID()) }
        handlers.on(MakeGradientSegment.self) { call, _ in try training.makeSegment(call) }
        handlers.on(ConfigureOptimizer.self) { call, _ in try training.configure(call, weights: box) }
        handlers.on(TrainStep.self) { call, _ in try await training.runStep { try training.step(call, weights: box) } }
        handlers.on(SaveCheckpoint.self) { call, _ in try training.save(call, weights: box) }
        handlers.on(LoadCheckpoint.self) { call, _ in try training.load(call, weights: box) }
        handlers.on(LoadReferenceModel.self) { call, _ in try rl.loadReference(call, training: training, weights: box) }
        handlers.on(ComputeLogProbs.self) { call, _ in try rl.logProbs(call, training: training, weights: box) }
        handlers.on(PolicyStep.self) { call, _ in try await training.runStep { try rl.step(call, training: training, weights: box) } }
        handlers.on(LoadModel.self) { call, _ in
            guard let device = context.device else { throw WeightSyncError("trainer \(context.actorName) was placed without a device") }
            let start = ContinuousClock.now
            // Its placement's share bounds its memory; spawned without a share, the device is its own.
            let fraction = context.deviceFraction > 0 ? context.deviceFraction : 1
            let loaded = try await BlockingWork.run(name: "colocate.load") {
                try TrainerWeights(directory: call.directory, device: device, dtype: call.dtype, memoryFraction: fraction)
            }
            box.value = loaded
            box.pusher = nil
            let t = ContinuousClock.now - start
            return .init(parameters: loaded.table.totalCount, bytes: loaded.byteCount,
                         seconds: t.inSeconds)
        }
        // Device work waits on the device's thread: on the actor's thread, off the Swift concurrency pool.
        handlers.onBlocking(ZeroWeights.self) { _, _ in
            try box.loaded().zero()
            return Empty()
        }
        handlers.onBlocking(PerturbWeights.self) { call, _ in
            try box.loaded().perturb(seed: call.seed, scale: call.scale)
            return Empty()
        }
        handlers.on(ExportWeights.self) { _, _ in
            let w = try box.loaded()
            return .init(deviceUUID: w.buffer.device.uuid, exported: try w.export())
        }
        handlers.on(AttachWeightDestinations.self) { call, _ in
            let w = try box.loaded()
            let uuid = w.buffer.device.uuid
            let mine = call.destinations.filter { $0.deviceUUID.lowercased() == uuid.lowercased() }
            guard !mine.isEmpty else {
                throw WeightSyncError("none of the \(call.destinations.count) engine ranks is on this trainer's device \(uuid)")
            }
            let pusher = try w.makePusher()
            for d in mine { try pusher.attach(d) }
            box.pusher = pusher
            return .init(deviceUUID: uuid, attached: mine.count)
        }
        // Gate waits (up to `waitSeconds`) and device synchronisation block a thread: the actor's own,
        // which the call reaches from the connection's reader and replies from, never one of the pool's.
        handlers.onBlocking(PushWeights.self) { call, _ in
            let start = monotonicNanoseconds()
            let w = try box.loaded()
            guard let pusher = box.pusher else { throw WeightSyncError("the trainer has no engine ranks attached (call AttachWeightDestinations first)") }
            let wait = Duration.milliseconds(Int64(max(0, call.waitSeconds) * 1000))
            let bytes = try pusher.push(waitingAtMost: wait)
            let end = monotonicNanoseconds()
            return .init(deviceUUID: w.buffer.device.uuid, bytes: bytes, version: w.buffer.version,
                         seconds: Double(end - start) / 1e9, startedAt: start, endedAt: end)
        }
        handlers.on(ExportWeightsNotice.self) { _, _ in
            let w = try box.loaded()
            return .init(deviceUUID: w.buffer.device.uuid, notice: try w.buffer.exportNotice())
        }
    }
}

/// The trainer's weights once loaded. Calls run one at a time (the actor mailbox), so plain storage suffices.
final class WeightsBox: @unchecked Sendable {
    var value: TrainerWeights?
    var pusher: WeightPusher?
    func loaded() throws -> TrainerWeights {
        guard let value else { throw WeightSyncError("the trainer has no model loaded (call LoadModel first)") }
        return value
    }
}

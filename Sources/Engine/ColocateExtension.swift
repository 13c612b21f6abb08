import Cluster
import Foundation
import WeightSync

/// The UUID of the rank's device (vLLM example: `report_device_id`).
public struct ReportDeviceUUID: RemoteCall {
    public typealias Reply = String
    public static let name = "colocate.reportDeviceUUID"
    public init() {}
}

/// Loads new weights from trainers' exports, keyed by device UUID: each rank opens the export of its
/// own device (vLLM example: `update_weights_from_ipc_handles`).
public struct UpdateWeightsFromHandles: RemoteCall {
    public struct Reply: Codable, Sendable {
        /// Bytes this rank wrote into its weights.
        public var bytes: Int
        /// Time from receiving the call to holding the new weights.
        public var seconds: Double
        public var version: UInt64
    }
    public static let name = "colocate.updateWeightsFromHandles"
    public var exports: [String: ExportedWeights]
    public init(exports: [String: ExportedWeights]) { self.exports = exports }
}

/// Loads new weights from trainers' sync notices (handle, version and layout fingerprint — a few
/// hundred bytes) keyed by device UUID. The rank must have received each layout once in a full
/// `UpdateWeightsFromHandles`; after that a sync carries no layout at all.
public struct UpdateWeightsFromNotices: RemoteCall {
    public typealias Reply = UpdateWeightsFromHandles.Reply
    public static let name = "colocate.updateWeightsFromNotices"
    public var notices: [String: WeightSyncNotice]
    public init(notices: [String: WeightSyncNotice]) { self.notices = notices }
}

/// Compares the rank's weights with its shard of the trainer's export (vLLM example:
/// `check_weights_changed`, made exact).
public struct CompareWeights: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var equal: Bool
        /// Names of tensors that differ (empty when equal).
        public var mismatches: [String]
    }
    public static let name = "colocate.compareWeights"
    public var exports: [String: ExportedWeights]
    public init(exports: [String: ExportedWeights]) { self.exports = exports }
}

/// The rank's weight buffer as a place its device's trainer can write (push sync): exported once;
/// trainers attach to it (`AttachWeightDestinations`) and then `PushWeights` on every sync, with no
/// call to the engine at all.
public struct ExportWeightDestination: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var deviceUUID: String
        public var destination: WeightDestination
    }
    public static let name = "colocate.exportWeightDestination"
    public init() {}
}

/// The built-in extension of every engine rank: what the colocated weight sync needs.
public struct ColocateExtension: WorkerExtension {
    public static let name = "colocate"
    let worker: EngineWorkerState
    /// Layouts received in full exports, to resolve notices. Calls run one at a time (the mailbox).
    private let layouts = LayoutBox()

    public init(worker: EngineWorkerState) { self.worker = worker }

    func export(for exports: [String: ExportedWeights]) throws -> ExportedWeights {
        guard let mine = exports[worker.device.uuid] else {
            throw WeightSyncError("no export for this rank's device \(worker.device.uuid) (exports are for: \(exports.keys.sorted().joined(separator: ", ")))")
        }
        return mine
    }

    func update(from exported: ExportedWeights, since start: ContinuousClock.Instant) throws -> UpdateWeightsFromHandles.Reply {
        let w = worker
        try w.checkWeightsAwake()
        // The pull writes the weights as a push does: under the gate, marked incomplete until done.
        let bytes = try w.writeGate.writing(timeout: .seconds(60), what: "cannot update the weights of engine rank \(w.rank)") {
            try w.backend.perform {
                try w.importer.update(from: exported, table: w.table, weights: w.weights, rank: w.rank, worldSize: w.worldSize)
            }
        }
        w.noteWeightsWritten()
        let elapsed = ContinuousClock.now - start
        return .init(bytes: bytes, seconds: elapsed.inSeconds,
                     version: exported.version)
    }

    public func handlers(into handlers: inout Handlers) {
        let w = worker, layouts = self.layouts
        handlers.on(ReportDeviceUUID.self) { _, _ in w.device.uuid }
        handlers.on(ExportWeightDestination.self) { _, _ in
            .init(deviceUUID: w.device.uuid, destination: try w.weightDestination())
        }
        // The copies and the gate waits block a thread: the actor's own (`onBlocking`), which the call
        // reaches from the connection's reader and replies from; never one of the cooperative pool's.
        handlers.onBlocking(UpdateWeightsFromHandles.self) { call, _ in
            let start = ContinuousClock.now
            let exported = try export(for: call.exports)
            let reply = try update(from: exported, since: start)
            layouts.cache.remember(exported)
            return reply
        }
        handlers.onBlocking(UpdateWeightsFromNotices.self) { call, _ in
            let start = ContinuousClock.now
            guard let notice = call.notices[w.device.uuid] else {
                throw WeightSyncError("no notice for this rank's device \(w.device.uuid) (notices are for: \(call.notices.keys.sorted().joined(separator: ", ")))")
            }
            let exported = try layouts.cache.resolve(notice)
            return try update(from: exported, since: start)
        }
        handlers.onBlocking(CompareWeights.self) { call, _ in
            let exported = try export(for: call.exports)
            let differing = try w.backend.perform {
                try w.importer.mismatches(against: exported, table: w.table, weights: w.weights, rank: w.rank, worldSize: w.worldSize)
            }
            return .init(equal: differing.isEmpty, mismatches: differing)
        }
    }
}

final class LayoutBox: @unchecked Sendable {
    var cache = WeightLayoutCache()
}

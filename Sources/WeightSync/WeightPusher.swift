#if canImport(Glibc)
import Glibc
#endif
import Compute
import Models

/// The trainer side of push sync: the trainer writes its weights into the engine ranks on its own
/// device itself, instead of each engine rank reading them (``WeightImporting``, the seed's pull).
///
/// An engine rank exports its weight buffer once (a ``WeightDestination``); the trainer opens it,
/// checks every tensor, and plans the copies — its full tensors into the rank's shards, converting the
/// dtype — once per destination (``attach(_:)``). Each sync is then ``push()``: on a GPU one
/// `copy_batch` launch per destination on the trainer's own stream, right behind its own work, so the
/// GPU does not switch to the engine's context for the copy; on CPU devices, host copies between
/// the shared-memory buffers.
///
/// The engine must not be generating while a push writes its weights — in an RL loop the engine is
/// idle while the trainer steps and syncs, as with pull.
///
/// Not thread-safe: a trainer pushes from one thread (its actor mailbox).
public final class WeightPusher: @unchecked Sendable {
    public let source: any ExportableWeightBuffer
    public let config: ModelConfig
    public let table: ParameterTable
    /// The GPU backend of the trainer's device (copies run on its stream); nil on CPU devices.
    public let backend: CUDABackend?

    private struct Target {
        var destination: WeightDestination
        /// Where each of the source layout's entries goes, in the source's order, in the mapped buffer at `base`.
        var entries: [WeightLayout.Entry]
        var base: UInt64
        /// On a GPU: every copy of the push, planned once.
        var batch: CUDACopyBatch?
        var bytes: Int
        /// The engine's buffer mapped here (kept open while attached).
        var mapping: AnyObject
        /// The rank's gate, held while writing.
        var gate: WeightWriteGate?
        /// The gate's memory epoch when attached: the rank's weight memory this mapping reaches.
        var epoch: UInt32?
    }
    private var targets: [Target] = []
    // Opening (and caching, and checking the owner of) engine buffers is what importers already do.
    private let hostMappings: WeightImporter?
    private let deviceMappings: CUDAWeightImporter?

    public init(source: any ExportableWeightBuffer, config: ModelConfig, backend: CUDABackend?) throws {
        guard (source.device.kind == .cuda) == (backend != nil) else {
            throw WeightSyncError("a push from \(source.device) needs \(source.device.kind == .cuda ? "its GPU's backend" : "no GPU backend")")
        }
        if let backend, backend.device.uuid != source.device.uuid {
            throw WeightSyncError("the backend is on \(backend.device.uuid), the weights on \(source.device.uuid)")
        }
        self.source = source
        self.config = config
        table = ParameterTable(config: config)
        self.backend = backend
        hostMappings = backend == nil ? WeightImporter(device: source.device) : nil
        deviceMappings = backend.map { CUDAWeightImporter(backend: $0) }
    }

    /// Destinations attached, in the order they were attached.
    public var destinations: [WeightDestination] { targets.map(\.destination) }

    /// Checks `destination` (this trainer's device, a live owner, exactly the model's shards inside
    /// its buffer), opens it, and plans the copies into it. Attaching the same rank's buffer again
    /// replaces the old attachment.
    public func attach(_ destination: WeightDestination) throws {
        let handle = destination.exported.handle
        guard handle.deviceUUID.lowercased() == source.device.uuid.lowercased() else {
            throw WeightSyncError("engine rank \(destination.rank) is on device \(handle.deviceUUID), but this trainer's weights are on \(source.device.uuid): a trainer pushes only to the engine ranks on its own device")
        }
        try ParameterTable.validate(config: config, tensorParallelSize: destination.worldSize)
        try WeightUpdateCheck.validate(destination: destination, table: table)
        let base: UInt64
        let mapping: AnyObject
        if let deviceMappings {
            let buffer = try deviceMappings.open(handle)
            (base, mapping) = (buffer.deviceAddress + UInt64(handle.offset), buffer)
        } else {
            let memory = try hostMappings!.open(handle)
            (base, mapping) = (UInt64(UInt(bitPattern: memory.baseAddress)) + UInt64(handle.offset), memory)
        }
        let byName = Dictionary(uniqueKeysWithValues: destination.exported.layout.entries.map { ($0.name, $0) })
        let entries = source.layout.entries.map { byName[$0.name]! }  // validated: every parameter is there
        var batch: CUDACopyBatch?
        if let backend {
            let destinations = entries.map {
                ShardCopyPlan.Destination(address: base + UInt64($0.offset), dtype: $0.dtype, allocation: ObjectIdentifier(mapping))
            }
            let plan = ShardCopyPlan(layout: source.layout, sourceBase: try sourceAddress(), table: table, destinations: destinations,
                                     rank: destination.rank, worldSize: destination.worldSize)
            batch = try backend.prepareCopyBatch(plan.copies)
        }
        targets.removeAll { $0.destination.exported.handle == handle }
        let gate = try destination.gate.map { try WeightWriteGate(opening: $0) }
        targets.append(Target(destination: destination, entries: entries, base: base, batch: batch,
                              bytes: entries.reduce(0) { $0 + $1.byteCount }, mapping: mapping, gate: gate, epoch: gate?.memoryEpoch))
    }

    /// Drops every destination (their mappings close when no longer used).
    public func detachAll() { targets.removeAll() }

    /// Writes the current weights into every attached destination and waits until they are there.
    /// Returns the bytes written. Throws, writing nothing, when an engine rank has gone away; the gone
    /// ranks are detached then, so that their memory (which a mapping keeps alive) is freed at once.
    ///
    /// Each rank's ``WeightWriteGate`` is held while writing: a rank that is generating is waited for,
    /// up to `waitingAtMost`, and then the push fails without writing anything. The ranks' weights are
    /// marked incomplete while written, and whole again (a new version) once every byte is there.
    ///
    /// Blocks its thread (gate waits, device synchronisation): run it on a thread of its own
    /// (`BlockingWork`), not on a Swift concurrency pool thread.
    @discardableResult
    public func push(waitingAtMost wait: Duration = .seconds(60)) throws -> Int {
        guard !targets.isEmpty else { throw WeightSyncError("no engine ranks attached: attach their weight destinations first") }
        let gone = targets.filter { !$0.destination.exported.handle.ownerIsAlive }.map(\.destination)
        if let first = gone.first {
            targets.removeAll { t in gone.contains { $0.exported.handle == t.destination.exported.handle } }
            throw WeightSyncError("engine rank \(first.rank) (pid \(first.exported.handle.ownerPID)) is gone: attach the new engine's destinations")
        }
        var held: [WeightWriteGate] = []
        defer { for gate in held { gate.release() } }
        for t in targets {
            guard let gate = t.gate else { continue }
            try gate.acquire(.push, timeout: wait, what: "cannot push into engine rank \(t.destination.rank)")
            held.append(gate)
        }
        if let stale = targets.first(where: { $0.gate != nil && $0.gate!.memoryEpoch != $0.epoch }) {
            let handle = stale.destination.exported.handle
            targets.removeAll { $0.destination.exported.handle == handle }
            throw WeightSyncError("engine rank \(stale.destination.rank) mapped new memory for its weights (a wake after a level-2 sleep) since this trainer attached: export and attach its destination again")
        }
        // Incomplete from the first byte to the last: a trainer that dies (or fails) in between leaves
        // the ranks refusing to generate until a complete sync.
        for gate in held { gate.beginWrite() }
        if let backend {
            try backend.perform {
                for t in targets { backend.copy(t.batch!) }
                try backend.synchronize()
            }
        } else {
            let sourceBase = UnsafeRawPointer(bitPattern: UInt(try sourceAddress()))!
            for t in targets {
                let destinationBase = UnsafeMutableRawPointer(bitPattern: UInt(t.base))!
                for (entry, d) in zip(source.layout.entries, t.entries) {
                    table[entry.name]!.shard.copyShard(from: sourceBase + entry.offset, entry.dtype, shape: entry.shape,
                                                       to: destinationBase + d.offset, d.dtype,
                                                       rank: t.destination.rank, worldSize: t.destination.worldSize)
                }
            }
        }
        for gate in held { gate.finishWrite() }
        return targets.reduce(0) { $0 + $1.bytes }
    }

    private func sourceAddress() throws -> UInt64 {
        if let gpu = source as? CUDAWeightBuffer { return gpu.buffer.deviceAddress }
        if let host = source as? SharedWeightBuffer { return UInt64(UInt(bitPattern: host.memory.baseAddress)) }
        throw WeightSyncError("cannot push from a \(type(of: source))")
    }
}

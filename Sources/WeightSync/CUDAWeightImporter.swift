#if canImport(Glibc)
import Glibc
#endif
import Compute
import Models

/// The engine-rank side of weight sync on a GPU: opens a trainer's CUDA IPC handle once (cached by
/// owner process and handle bytes), checks it names this rank's own GPU, validates the whole update
/// before writing, then copies each parameter's shard with one 2-D strided copy — a copy-engine
/// `cuMemcpyDtoDAsync` / `cuMemcpy2DAsync` when the dtypes match, the `copy2d` kernel converting
/// f32 → bf16/f16 when they differ — all on the backend's stream, synchronising once at the end.
/// Neighbouring copies that are contiguous on both sides merge (``ShardCopyPlan``).
///
/// Not thread-safe: one rank syncs its weights from one thread (its executor does the work).
public final class CUDAWeightImporter: WeightImporting, @unchecked Sendable {
    public let backend: CUDABackend
    public var device: Device { backend.device }

    private struct MappingKey: Hashable {
        var ownerPID: Int32
        var opaque: [UInt8]
    }
    private var mappings: [MappingKey: CUDABuffer] = [:]

    private struct PlanKey: Equatable {
        var layout: WeightLayout
        var table: ParameterTable
        var sourceBase: UInt64
        var rank: Int
        var worldSize: Int
    }
    /// What the plan assumed of one engine weight.
    private struct WeightSignature: Equatable {
        var name: String
        var address: UInt64
        var dtype: DType
        var shape: [Int]
        var onDevice: Bool

        init(_ name: String, _ w: Tensor) {
            let storage = w.deviceStorage
            self.name = name
            address = (storage?.deviceAddress ?? 0) + UInt64(w.byteOffset)
            dtype = w.dtype
            shape = w.shape
            onDevice = storage != nil
        }
    }

    /// Every engine weight, in the dictionary's own order (no name is hashed).
    private static func signature(of weights: [String: Tensor]) -> [WeightSignature] {
        weights.map { WeightSignature($0.key, $0.value) }
    }

    /// Whether `weights` are those `signature` was taken of, compared in place without allocating: a
    /// warm sync of an unchanged model spends microseconds here, not the tens a fresh signature costs.
    private static func weights(_ weights: [String: Tensor], match signature: [WeightSignature]) -> Bool {
        guard weights.count == signature.count else { return false }
        var i = 0
        for (name, w) in weights {
            let s = signature[i]
            i += 1
            let storage = w.deviceStorage
            guard s.name == name, s.dtype == w.dtype, s.onDevice == (storage != nil),
                  s.address == (storage?.deviceAddress ?? 0) + UInt64(w.byteOffset), s.shape == w.shape else { return false }
        }
        return true
    }
    private var cached: (key: PlanKey, weights: [WeightSignature], plan: ShardCopyPlan, batch: CUDACopyBatch?)?

    /// How an update's copies run on the GPU.
    public enum CopyMethod: String, Sendable, CaseIterable {
        /// All copies of an update in one `copy_batch` kernel launch (its task table made once per plan).
        case batched
        /// One driver call per copy: `cuMemcpyDtoDAsync` / `cuMemcpy2DAsync`, or the `copy2d` kernel
        /// when the dtype converts.
        case perCopy = "per-copy"
    }
    public var copyMethod: CopyMethod = .batched
    /// Record CUDA events around the copies and report their GPU time (``Report/gpuCopySeconds``).
    public var measuresGPUTime = false
    private var timing: (start: CUDAEvent, end: CUDAEvent)?

    /// How the last ``update(from:table:weights:rank:worldSize:)`` went.
    public struct Report: Sendable {
        /// Copies queued (after merging) for `parameters` parameters.
        public var copies: Int
        public var parameters: Int
        public var destinationBytes: Int
        /// Whether validation and planning were reused from the previous update of the same layout.
        public var reusedPlan: Bool
        /// Host time from the call until the copies were queued (mapping, checks, plan), and then until
        /// the stream had finished them.
        public var prepareSeconds: Double
        public var copySeconds: Double
        /// GPU time between events recorded before and after the copies, when ``measuresGPUTime``.
        public var gpuCopySeconds: Double?
    }
    public private(set) var lastReport: Report?

    public init(backend: CUDABackend) {
        self.backend = backend
    }

    public var openMappings: Int { mappings.count }

    public func closeAll() {
        mappings.removeAll()
        cached = nil
    }

    /// Maps (or reuses the mapping of) the allocation a handle names, after checking it is a CUDA
    /// handle of this rank's own GPU whose owner is alive. The buffer starts at the allocation's first
    /// byte and covers the handle's range.
    public func open(_ handle: MemoryHandle) throws -> CUDABuffer {
        guard handle.isCUDA else {
            throw WeightSyncError("a \(handle.kind.rawValue) handle cannot be opened on a CUDA device")
        }
        guard handle.deviceUUID.lowercased() == device.uuid.lowercased() else {
            throw WeightSyncError("handle is for device \(handle.deviceUUID), but this rank is on \(device.uuid): each rank must open the export of its own device's trainer")
        }
        guard handle.offset >= 0, handle.byteCount >= 0, handle.offset <= Int.max - handle.byteCount else {
            throw WeightSyncError("malformed handle: \(handle.byteCount) bytes at offset \(handle.offset)")
        }
        let key = MappingKey(ownerPID: handle.ownerPID, opaque: handle.opaque)
        let needed = handle.offset + handle.byteCount
        // A trainer that reallocated exports a new handle; a dead one leaves its mapping behind: close
        // those so the old allocations are freed (the cached copy plan pointed into them too).
        for (known, _) in mappings where known != key && (known.ownerPID == key.ownerPID || kill(known.ownerPID, 0) != 0 && errno == ESRCH) {
            mappings[known] = nil
            cached = nil
        }
        guard handle.ownerIsAlive else {
            mappings[key] = nil
            throw WeightSyncError("the trainer owning the weights (pid \(handle.ownerPID)) is gone")
        }
        if let open = mappings[key], open.byteCount >= needed { return open }
        var whole = handle
        whole.offset = 0
        whole.byteCount = needed
        let opened = try backend.cudaDevice.open(whole)
        mappings[key] = opened
        return opened
    }

    public func validate(_ exported: ExportedWeights, table: ParameterTable, weights: [String: Tensor], worldSize: Int) throws {
        try WeightUpdateCheck.validate(exported, table: table, weights: weights, worldSize: worldSize)
        for spec in table.specs {
            let w = weights[spec.name]!
            guard let storage = w.deviceStorage, storage.device.uuid == device.uuid else {
                throw WeightSyncError("engine tensor \(spec.name) is on \(w.device), not on this rank's GPU \(device.uuid)")
            }
        }
    }

    /// Validates the update (names, shapes, dtypes, bounds, device) and only then queues the copies;
    /// waits for them once. Returns the bytes written. An update of the same layout into the same
    /// weights as the last one reuses its validation and plan.
    @discardableResult
    public func update(from exported: ExportedWeights, table: ParameterTable, weights: [String: Tensor],
                       rank: Int, worldSize: Int) throws -> Int {
        let clock = ContinuousClock()
        let start = clock.now
        let (plan, batch, reused) = try prepare(exported, table: table, weights: weights, rank: rank, worldSize: worldSize)
        let prepared = clock.now
        if measuresGPUTime && timing == nil {
            timing = (try backend.cudaDevice.makeEvent(), try backend.cudaDevice.makeEvent())
        }
        let events = measuresGPUTime ? timing : nil
        try backend.perform {
            try events?.start.record(on: backend.stream)
            if let batch {
                backend.copy(batch)
            } else {
                for c in plan.copies {
                    backend.copy2D(source: c.source, sourcePitch: c.sourcePitch, destination: c.destination,
                                   destinationPitch: c.destinationPitch, rows: c.rows, cols: c.columns,
                                   sourceType: c.sourceType, destinationType: c.destinationType)
                }
            }
            try events?.end.record(on: backend.stream)
            try backend.synchronize()
        }
        let done = clock.now
        lastReport = Report(copies: plan.copies.count, parameters: plan.parameters, destinationBytes: plan.destinationBytes,
                            reusedPlan: reused, prepareSeconds: seconds(prepared - start), copySeconds: seconds(done - prepared),
                            gpuCopySeconds: try events.map { try $0.end.seconds(since: $0.start) })
        return plan.destinationBytes
    }

    public func mismatches(against exported: ExportedWeights, table: ParameterTable, weights: [String: Tensor],
                           rank: Int, worldSize: Int) throws -> [String] {
        try validate(exported, table: table, weights: weights, worldSize: worldSize)
        let source = try open(exported.handle)
        let base = source.deviceAddress + UInt64(exported.handle.offset)
        var differing: [String] = []
        try backend.perform {
            for entry in exported.layout.entries {
                let spec = table[entry.name]!
                let mine = weights[entry.name]!
                let expected = try backend.zeros(mine.shape, dtype: mine.dtype)
                let b = spec.shard.block(of: entry.shape, rank: rank, worldSize: worldSize)
                backend.copy2D(source: base + UInt64(entry.offset + b.offset * entry.dtype.byteSize), sourcePitch: b.pitch,
                               destination: expected.deviceStorage!.deviceAddress + UInt64(expected.byteOffset),
                               destinationPitch: b.columns, rows: b.rows, cols: b.columns,
                               sourceType: entry.dtype, destinationType: mine.dtype)
                let (a, e) = (try backend.download(mine), try backend.download(expected))
                if memcmp(a.rawPointer, e.rawPointer, a.byteCount) != 0 { differing.append(entry.name) }
            }
        }
        return differing
    }

    /// The plan of an update: reused when layout, table, source mapping and engine weights are those
    /// of the last update (layouts compare by identity first, so an unchanged export costs little),
    /// else validated and planned afresh.
    private func prepare(_ exported: ExportedWeights, table: ParameterTable, weights: [String: Tensor],
                         rank: Int, worldSize: Int) throws -> (ShardCopyPlan, CUDACopyBatch?, reused: Bool) {
        let source = try open(exported.handle)
        guard exported.layout.totalBytes <= exported.handle.byteCount else {
            throw WeightSyncError("the layout needs \(exported.layout.totalBytes) bytes; the handle gives \(exported.handle.byteCount)")
        }
        let key = PlanKey(layout: exported.layout, table: table, sourceBase: source.deviceAddress + UInt64(exported.handle.offset),
                          rank: rank, worldSize: worldSize)
        if let cached, cached.key == key, Self.weights(weights, match: cached.weights), (cached.batch != nil) == (copyMethod == .batched) {
            return (cached.plan, cached.batch, true)
        }

        try validate(exported, table: table, weights: weights, worldSize: worldSize)
        guard rank >= 0 && rank < worldSize else { throw WeightSyncError("rank \(rank) is outside a tensor-parallel group of \(worldSize)") }
        let destinations = exported.layout.entries.map { entry -> ShardCopyPlan.Destination in
            let w = weights[entry.name]!, storage = w.deviceStorage!  // validated
            return .init(address: storage.deviceAddress + UInt64(w.byteOffset), dtype: w.dtype, allocation: ObjectIdentifier(storage))
        }
        let plan = ShardCopyPlan(layout: exported.layout, sourceBase: key.sourceBase, table: table,
                                 destinations: destinations, rank: rank, worldSize: worldSize)
        let batch = copyMethod == .batched ? try backend.prepareCopyBatch(plan.copies) : nil
        cached = (key, Self.signature(of: weights), plan, batch)
        return (plan, batch, false)
    }
}

private func seconds(_ d: Duration) -> Double {
    d.inSeconds
}

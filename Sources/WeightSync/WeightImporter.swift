import Compute
import Models

/// The engine-rank side of weight sync: opens a trainer's buffer once (the handle must be for this
/// rank's own device), keeps it mapped, and on every sync copies this rank's shard of each parameter
/// into the live weights — converting dtype in the copy (f32 master weights → bf16/f16 engine weights).
///
/// Updates are all-or-nothing: names, shapes, dtypes, bounds and the device are checked before the
/// first byte is written, so a mismatched update leaves the engine serving its old weights.
///
/// This is the kind for virtual CPU devices (shared memory); ``CUDAWeightImporter`` is the GPU kind.
public final class WeightImporter: WeightImporting, @unchecked Sendable {
    public let device: Device
    private var mappings: [SharedMemoryIdentity: HostMemory] = [:]

    public init(device: Device) { self.device = device }

    /// Number of trainer buffers currently mapped.
    public var openMappings: Int { mappings.count }

    /// Maps (or reuses the mapping of) the buffer a handle names, after checking it belongs here.
    public func open(_ handle: MemoryHandle) throws -> HostMemory {
        guard handle.deviceUUID == device.uuid else {
            throw WeightSyncError("handle is for device \(handle.deviceUUID), but this rank is on \(device.uuid): each rank must open the export of its own device's trainer")
        }
        guard handle.kind == .cpuSharedMemory, device.kind == .cpu else {
            throw WeightSyncError("a \(handle.kind) handle cannot be opened on a \(device.kind) device")
        }
        guard handle.offset >= 0, handle.byteCount >= 0, handle.offset <= Int.max - handle.byteCount else {
            throw WeightSyncError("malformed handle: \(handle.byteCount) bytes at offset \(handle.offset)")
        }
        let needed = handle.offset + handle.byteCount
        let identity = try SharedMemoryIdentity(bytes: handle.opaque)
        // A trainer that reloaded exports a new buffer; one that died leaves its buffer behind: let go
        // of those mappings so the memory is freed.
        for (known, _) in mappings where known != identity && (known.pid == identity.pid || !known.isOwnerAlive) {
            mappings[known] = nil
        }
        if let m = mappings[identity] {
            // The owner may have died since; a mapping keeps memory alive, but the sync must not go on
            // silently reading a dead trainer's weights.
            guard identity.isOwnerAlive else {
                mappings[identity] = nil
                throw WeightSyncError("the trainer owning the weights (pid \(identity.pid)) is gone")
            }
            if m.byteCount >= needed { return m }
            mappings[identity] = nil
        }
        let fd = try identity.open()  // closed on every path that does not hand it to the mapping
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0, Int(st.st_size) >= needed else {
            throw WeightSyncError("the exported buffer of pid \(identity.pid) holds fewer bytes than the handle's \(needed)")
        }
        let memory = try HostMemory.map(owning: fd, byteCount: needed, device: device)
        mappings[identity] = memory
        return memory
    }

    /// Closes every mapping (a trainer released or replaced its buffer).
    public func closeAll() { mappings.removeAll() }

    /// Checks `exported` against this rank's weights and parameter table. Throws naming the first
    /// tensor at fault; writes nothing.
    public func validate(_ exported: ExportedWeights, table: ParameterTable, weights: [String: Tensor], worldSize: Int) throws {
        try WeightUpdateCheck.validate(exported, table: table, weights: weights, worldSize: worldSize)
        for (name, w) in weights where table[name] != nil && w.memory == nil {
            throw WeightSyncError("engine tensor \(name) is on \(w.device); this importer writes host memory (use CUDAWeightImporter)")
        }
    }

    /// Validates, then copies this rank's shards from the trainer's buffer into `weights`.
    public func update(from exported: ExportedWeights, table: ParameterTable, weights: [String: Tensor],
                       rank: Int, worldSize: Int) throws -> Int {
        try validate(exported, table: table, weights: weights, worldSize: worldSize)
        let source = try open(exported.handle)
        let base = UnsafeRawPointer(source.baseAddress) + exported.handle.offset
        var bytes = 0
        for entry in exported.layout.entries {
            let spec = table[entry.name]!
            let dst = weights[entry.name]!
            spec.shard.copyShard(from: base + entry.offset, entry.dtype, shape: entry.shape,
                                 to: dst.rawPointer, dst.dtype, rank: rank, worldSize: worldSize)
            bytes += dst.byteCount
        }
        return bytes
    }

    /// Compares this rank's weights with its shard of the trainer's buffer (converted to the engine's
    /// dtype, so an f32 → bf16 sync compares equal). Returns the names that differ.
    public func mismatches(against exported: ExportedWeights, table: ParameterTable, weights: [String: Tensor],
                           rank: Int, worldSize: Int) throws -> [String] {
        try validate(exported, table: table, weights: weights, worldSize: worldSize)
        let source = try open(exported.handle)
        let base = UnsafeRawPointer(source.baseAddress) + exported.handle.offset
        var differing: [String] = []
        var scratch: [UInt8] = []
        for entry in exported.layout.entries {
            let spec = table[entry.name]!
            let mine = weights[entry.name]!
            // Row by row through one scratch buffer: no full-size temporaries.
            let b = spec.shard.block(of: entry.shape, rank: rank, worldSize: worldSize)
            let rowBytes = b.columns * mine.dtype.byteSize
            if scratch.count < rowBytes { scratch = [UInt8](repeating: 0, count: rowBytes) }
            let equal = scratch.withUnsafeMutableBytes { buf in
                (0..<b.rows).allSatisfy { r in
                    DTypeConversion.convert(from: base + entry.offset + (b.offset + r * b.pitch) * entry.dtype.byteSize, entry.dtype,
                                            to: buf.baseAddress!, mine.dtype, count: b.columns)
                    return memcmp(buf.baseAddress!, mine.rawPointer + r * rowBytes, rowBytes) == 0
                }
            }
            if !equal { differing.append(entry.name) }
        }
        return differing
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension SharedMemoryIdentity {
    /// The owner still holds the object open (false once it exited — zombie or reaped — or released it).
    var isOwnerAlive: Bool { access("/proc/\(pid)/fd/\(fd)", F_OK) == 0 }
}

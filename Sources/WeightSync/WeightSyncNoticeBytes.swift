import Compute

/// A fixed binary form of ``WeightSyncNotice`` (about 150 bytes) for control planes on the sync's
/// critical path: it encodes and decodes in a microsecond, where a JSON coder takes tens to a hundred.
///
/// Little-endian: magic `WSN1`, version u64, layout fingerprint u64, byte count i64, offset i64,
/// owner pid i32, kind u8 (0 CUDA IPC, 1 CPU shared memory, 2 CUDA file descriptor), opaque length u16 and bytes, device
/// UUID length u16 and UTF-8 bytes.
extension WeightSyncNotice {
    static let magic: [UInt8] = Array("WSN1".utf8)
    /// A handle's kind on the wire is its index here.
    static let kindCodes: [MemoryHandle.Kind] = [.cudaIPC, .cpuSharedMemory, .cudaFileDescriptor]

    /// The notice in its binary form.
    public var bytes: [UInt8] {
        var out = Self.magic
        out.reserveCapacity(48 + handle.opaque.count + handle.deviceUUID.utf8.count)
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out += $0 } }
        put(version)
        put(layoutFingerprint)
        put(Int64(handle.byteCount))
        put(Int64(handle.offset))
        put(handle.ownerPID)
        put(Self.kindCodes.firstIndex(of: handle.kind).map(UInt8.init)!)
        put(UInt16(handle.opaque.count))
        out += handle.opaque
        put(UInt16(handle.deviceUUID.utf8.count))
        out += handle.deviceUUID.utf8
        return out
    }

    /// Decodes the binary form; throws on anything malformed.
    public init(bytes: [UInt8]) throws(WeightSyncError) {
        var at = 0
        func take(_ n: Int) throws(WeightSyncError) -> ArraySlice<UInt8> {
            guard n >= 0, at + n <= bytes.count else { throw WeightSyncError("a weight sync notice is truncated (\(bytes.count) bytes)") }
            defer { at += n }
            return bytes[at..<at + n]
        }
        func get<T: FixedWidthInteger>(_: T.Type) throws(WeightSyncError) -> T {
            let slice = try take(MemoryLayout<T>.size)
            var value = T.zero
            withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: slice) }
            return T(littleEndian: value)
        }
        guard Array(try take(4)) == Self.magic else { throw WeightSyncError("not a weight sync notice (bad magic)") }
        let version = try get(UInt64.self)
        let fingerprint = try get(UInt64.self)
        let byteCount = try get(Int64.self), offset = try get(Int64.self)
        let pid = try get(Int32.self)
        let kind = try get(UInt8.self)
        guard Int(kind) < Self.kindCodes.count else { throw WeightSyncError("a weight sync notice has unknown handle kind \(kind)") }
        let opaque = Array(try take(Int(try get(UInt16.self))))
        let uuidBytes = try take(Int(try get(UInt16.self)))
        guard at == bytes.count else { throw WeightSyncError("a weight sync notice has \(bytes.count - at) trailing bytes") }
        guard let uuid = String(validating: uuidBytes, as: UTF8.self) else {
            throw WeightSyncError("a weight sync notice has a device UUID that is not UTF-8")
        }
        guard let count = Int(exactly: byteCount), let start = Int(exactly: offset) else {
            throw WeightSyncError("a weight sync notice's range (\(byteCount) bytes at \(offset)) does not fit in this machine's sizes")
        }
        let handle = MemoryHandle(deviceUUID: uuid, kind: Self.kindCodes[Int(kind)],
                                  byteCount: count, offset: start, opaque: opaque, ownerPID: pid)
        do {
            try handle.validate()
        } catch {
            throw WeightSyncError("a weight sync notice has \(error.message)")
        }
        self.init(handle: handle, version: version, layoutFingerprint: fingerprint)
    }
}

/// A reference to device memory that another process on the same device can open: the data plane of
/// weight sync. It is plain data (Codable), safe to send anywhere; opening it checks the device, the
/// owner and the object's identity, so a stale or foreign handle is refused, never misread.
public struct MemoryHandle: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, Codable {
        /// `cuIpcGetMemHandle` of a `cuMemAlloc` allocation; `opaque` is the 64-byte `CUipcMemHandle`.
        case cudaIPC
        /// A memfd shared-memory object of a virtual CPU device; `opaque` identifies it (see
        /// `SharedMemoryIdentity`).
        case cpuSharedMemory
    }

    /// UUID of the device holding the memory (`GPU-…` / `CPU-…`).
    public var deviceUUID: String
    public var kind: Kind
    /// Bytes the handle covers, starting at `offset` inside the exported allocation.
    public var byteCount: Int
    public var offset: Int
    public var opaque: [UInt8]
    /// Process that owns the memory; opening fails cleanly once it is gone.
    public var ownerPID: Int32

    public init(deviceUUID: String, kind: Kind, byteCount: Int, offset: Int, opaque: [UInt8], ownerPID: Int32) {
        self.deviceUUID = deviceUUID
        self.kind = kind
        self.byteCount = byteCount
        self.offset = offset
        self.opaque = opaque
        self.ownerPID = ownerPID
    }

    public var description: String { "\(kind) handle of \(byteCount) bytes on \(deviceUUID) owned by pid \(ownerPID)" }
}

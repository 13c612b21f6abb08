#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A reference to device memory that another process on the same device can open (the data plane).
///
/// CUDA: the 64 bytes of a `cuIpcGetMemHandle` of a `cuMemAlloc` allocation, or where to fetch the file
/// descriptor of a `cuMemCreate` allocation. CPU virtual devices: the identity of a memfd
/// (`SharedMemoryIdentity`). It travels through the control plane; the bytes
/// it names never do. `offset` and `byteCount` select a range of the exported allocation.
public struct MemoryHandle: Codable, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Codable, Sendable, Hashable {
        /// `cuIpcGetMemHandle` bytes of a CUDA allocation.
        case cudaIPC
        /// A CUDA virtual-memory allocation shared as a POSIX file descriptor: a ``DescriptorReference``
        /// to fetch it from the owner's ``DescriptorExchange``, and the allocation's size.
        case cudaFileDescriptor
        /// A shared-memory object of a virtual CPU device.
        case cpuSharedMemory
    }

    /// Whether the memory is on a CUDA device (either way of sharing it).
    public var isCUDA: Bool { kind == .cudaIPC || kind == .cudaFileDescriptor }

    /// The device holding the memory (`GPU-…` / `CPU-…`); opening it on another device is an error.
    public var deviceUUID: String
    public var kind: Kind
    /// Bytes the handle gives access to, from `offset`.
    public var byteCount: Int
    /// Where the range starts in the exported allocation.
    public var offset: Int
    /// Kind-specific bytes (the CUDA IPC handle, or a `SharedMemoryIdentity`).
    public var opaque: [UInt8]
    /// The exporting process: the memory lives only as long as it does.
    public var ownerPID: Int32

    public init(deviceUUID: String, kind: Kind, byteCount: Int, offset: Int, opaque: [UInt8], ownerPID: Int32) {
        self.deviceUUID = deviceUUID
        self.kind = kind
        self.byteCount = byteCount
        self.offset = offset
        self.opaque = opaque
        self.ownerPID = ownerPID
    }

    public var description: String {
        "MemoryHandle(\(kind.rawValue), \(deviceUUID), \(byteCount) bytes at \(offset), owner \(ownerPID))"
    }

    /// Whether the exporting process still exists (`kill(pid, 0)`; a process of another user counts).
    public var ownerIsAlive: Bool {
        ownerPID > 0 && (kill(ownerPID, 0) == 0 || errno == EPERM)
    }

    /// Throws when the exporting process has exited: its memory is gone.
    public func checkOwnerAlive() throws(ComputeError) {
        guard ownerIsAlive else {
            throw ComputeError("cannot open \(kind.rawValue) memory of process \(ownerPID): that process has exited, and its memory with it")
        }
    }

    /// The same handle narrowed to `byteCount` bytes at `offset` within this one.
    public func slice(offset extra: Int, byteCount count: Int) throws(ComputeError) -> MemoryHandle {
        guard extra >= 0, count >= 0, extra + count <= byteCount else {
            throw ComputeError("slice of \(count) bytes at \(extra) is outside a handle of \(byteCount) bytes")
        }
        var out = self
        out.offset += extra
        out.byteCount = count
        return out
    }
}

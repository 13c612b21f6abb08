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
        guard MemoryHandle.range(offset: extra, byteCount: count, fitsIn: byteCount) else {
            throw ComputeError("slice of \(count) bytes at \(extra) is outside a handle of \(byteCount) bytes")
        }
        let (start, overflow) = offset.addingReportingOverflow(extra)
        guard !overflow else { throw ComputeError("slice at \(extra) of a handle at offset \(offset) overflows a 64-bit offset") }
        var out = self
        out.offset = start
        out.byteCount = count
        return out
    }

    /// Whether `byteCount` bytes at `offset` lie within `size` bytes, without overflow whatever the
    /// values (they may come from another process).
    public static func range(offset: Int, byteCount: Int, fitsIn size: Int) -> Bool {
        offset >= 0 && byteCount >= 0 && size >= 0 && offset <= size && byteCount <= size - offset
    }

    /// Checks that the handle's range lies within an exported allocation of `allocationSize` bytes.
    public func checkRange(within allocationSize: Int) throws(ComputeError) {
        guard MemoryHandle.range(offset: offset, byteCount: byteCount, fitsIn: allocationSize) else {
            throw ComputeError("the memory handle's range (\(byteCount) bytes at \(offset)) exceeds the exported allocation of \(allocationSize) bytes")
        }
    }

    /// Checks what any handle must satisfy, whoever made it: a non-negative range whose end fits in
    /// an `Int`, and a positive owner pid (`kill` treats 0 and negative pids as process groups).
    public func validate() throws(ComputeError) {
        guard offset >= 0, byteCount >= 0, !offset.addingReportingOverflow(byteCount).overflow else {
            throw ComputeError("invalid memory handle range: \(byteCount) bytes at \(offset)")
        }
        guard ownerPID > 0 else { throw ComputeError("invalid memory handle owner pid \(ownerPID)") }
    }

    private enum CodingKeys: String, CodingKey { case deviceUUID, kind, byteCount, offset, opaque, ownerPID }

    /// Decodes and ``validate()``s: a handle from the wire with a range or pid that cannot be right is
    /// a decoding error, not a trap or a wrong mapping later.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(deviceUUID: try c.decode(String.self, forKey: .deviceUUID), kind: try c.decode(Kind.self, forKey: .kind),
                  byteCount: try c.decode(Int.self, forKey: .byteCount), offset: try c.decode(Int.self, forKey: .offset),
                  opaque: try c.decode([UInt8].self, forKey: .opaque), ownerPID: try c.decode(Int32.self, forKey: .ownerPID))
        do {
            try validate()
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }
}

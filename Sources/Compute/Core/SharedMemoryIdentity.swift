#if canImport(Glibc)
import Glibc
#endif

/// Identity of a memfd shared-memory object, carried in a `MemoryHandle`'s opaque bytes.
///
/// A peer opens the object through `/proc/<pid>/fd/<fd>` (the kernel allows it only to processes that
/// may inspect the owner: the same user), then checks the inode so that a recycled pid or descriptor
/// can never hand it some other file.
public struct SharedMemoryIdentity: Sendable, Hashable {
    public var pid: Int32
    public var fd: Int32
    public var inode: UInt64
    public var device: UInt64

    public init(pid: Int32, fd: Int32, inode: UInt64, device: UInt64) {
        self.pid = pid
        self.fd = fd
        self.inode = inode
        self.device = device
    }

    /// The identity of this process's descriptor `fd`.
    public static func of(fileDescriptor fd: Int32) throws(ComputeError) -> SharedMemoryIdentity {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ComputeError("fstat of shared memory failed: \(String(cString: strerror(errno)))") }
        return SharedMemoryIdentity(pid: getpid(), fd: fd, inode: UInt64(st.st_ino), device: UInt64(st.st_dev))
    }

    public var bytes: [UInt8] {
        var out = OpaqueBytesWriter()
        out.put(pid); out.put(fd); out.put(inode); out.put(device)
        return out.bytes
    }

    public init(bytes: [UInt8]) throws(ComputeError) {
        guard bytes.count == 24 else { throw ComputeError("malformed shared-memory handle (\(bytes.count) opaque bytes, expected 24)") }
        var input = OpaqueBytesReader(bytes)
        self.init(pid: input.get(Int32.self), fd: input.get(Int32.self), inode: input.get(UInt64.self), device: input.get(UInt64.self))
    }

    /// Opens the object from another process, read-write. Errors say whether the owner is gone or the
    /// object is not the one named.
    public func open() throws(ComputeError) -> UniqueFileDescriptor {
        if kill(pid, 0) != 0 && errno == ESRCH {
            throw ComputeError(.peerGone, "the owner of the shared memory (pid \(pid)) is gone")
        }
        let opened = Glibc.open("/proc/\(pid)/fd/\(self.fd)", O_RDWR | O_CLOEXEC)
        guard opened >= 0 else {
            let reason = errno == ENOENT ? "the owner (pid \(pid)) has released it or exited" : String(cString: strerror(errno))
            throw ComputeError(errno == ENOENT ? .peerGone : .systemCall, "cannot open shared memory of pid \(pid): \(reason)")
        }
        let fd = UniqueFileDescriptor(adopting: opened)  // closed if the check below fails
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0, UInt64(st.st_ino) == inode, UInt64(st.st_dev) == device else {
            throw ComputeError(.peerGone, "shared memory of pid \(pid) is no longer the exported object (released and replaced)")
        }
        return fd
    }
}

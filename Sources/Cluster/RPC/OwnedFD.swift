#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A file descriptor this object owns: closed when the object goes away unless `release()`d first.
///
/// Calls and replies carry these as attachments (sent with `SCM_RIGHTS`): the receiver gets its own
/// descriptor for the same open file — e.g. a memfd of shared weights — and the sender keeps its own.
public final class OwnedFD: Sendable, CustomStringConvertible {
    private let fd: Mutex<Int32>

    /// Takes ownership of `fd`.
    public init(adopting fd: Int32) { self.fd = Mutex(fd) }

    deinit { close() }

    /// The descriptor (-1 after `close()` or `release()`). Valid while this object owns it.
    public var rawValue: Int32 { fd.withLock { $0 } }

    /// Gives up ownership: the caller now must close the returned descriptor.
    public func release() -> Int32 {
        fd.withLock { fd in defer { fd = -1 }; return fd }
    }

    /// Closes the descriptor now.
    public func close() {
        let old = release()
        if old >= 0 { _ = Glibc.close(old) }
    }

    /// A new owner of a duplicate (`F_DUPFD_CLOEXEC`) of the same open file.
    public func duplicate() throws(ClusterError) -> OwnedFD {
        try fd.withLock { (fd) throws(ClusterError) in try OwnedFD.duplicating(fd) }
    }

    /// An owner of a duplicate of `fd`, which stays with its current owner (e.g. a `HostMemory`'s
    /// shared-memory descriptor, to attach to a call or reply).
    public static func duplicating(_ fd: Int32) throws(ClusterError) -> OwnedFD {
        let new = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard new >= 0 else { throw ClusterError.errno("cannot duplicate file descriptor \(fd)") }
        return OwnedFD(adopting: new)
    }

    public var description: String { "OwnedFD(\(rawValue))" }
}

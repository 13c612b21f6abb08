#if canImport(Glibc)
import Glibc
#endif

/// A file descriptor with exactly one owner: closed when the owner goes out of scope — on every path,
/// error paths included — unless ownership is handed on with `take()`.
///
/// Why: a descriptor held as a bare `Int32` has to be closed by hand wherever a function returns or
/// throws, and every missed path leaks it (into spawned workers, too, were it not close-on-exec).
/// `~Copyable` makes the single owner a compile-time fact.
public struct UniqueFileDescriptor: ~Copyable, Sendable {
    /// The descriptor; valid while this value owns it.
    public let rawValue: Int32

    /// Takes ownership of `fd`.
    public init(adopting fd: Int32) { rawValue = fd }

    /// Hands ownership to the caller, who must close the returned descriptor.
    public consuming func take() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    deinit {
        if rawValue >= 0 { _ = close(rawValue) }
    }
}

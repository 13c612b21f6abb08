#if canImport(Glibc)
import Glibc
#endif
import CShims
import Compute

/// Thin wrappers over the Unix-domain socket calls, every result checked in one place.
enum UnixSocket {
    /// A listening stream socket bound at `path` (close-on-exec).
    static func listen(path: String) throws(ClusterError) -> UniqueFileDescriptor {
        let fd = try makeSocket()  // closed if binding or listening fails
        try withAddress(path) { (addr, len) throws(ClusterError) in
            guard bind(fd.rawValue, addr, len) == 0 else { throw ClusterError.errno("cannot bind socket \(path)") }
        }
        guard Glibc.listen(fd.rawValue, 128) == 0 else { throw ClusterError.errno("cannot listen on socket \(path)") }
        return fd
    }

    /// A stream socket connected to `path` (close-on-exec).
    static func connect(path: String) throws(ClusterError) -> UniqueFileDescriptor {
        let fd = try makeSocket()  // closed if connecting fails
        try withAddress(path) { (addr, len) throws(ClusterError) in
            var r: Int32
            repeat { r = Glibc.connect(fd.rawValue, addr, len) } while r != 0 && errno == EINTR
            guard r == 0 else { throw ClusterError.errno("cannot connect to \(path)") }
        }
        return fd
    }

    /// The next connection, or nil once the listener is shut down or fails. Out of descriptors or
    /// memory, it waits (`AcceptBackoff`) instead of spinning: the pending connection stays queued.
    static func accept(_ listener: Int32) -> UniqueFileDescriptor? {
        var backoff = AcceptBackoff()
        while true {
            let fd = cshim_accept_cloexec(listener)
            if fd >= 0 { return UniqueFileDescriptor(adopting: fd) }
            let code = errno
            switch backoff.next(after: code) {
            case .retry: continue
            case .wait(let delay): usleep(UInt32(delay.inMicroseconds))
            case .stop: return nil
            }
        }
    }

    /// The pid and uid of the process at the other end (`SO_PEERCRED`).
    static func peerCredentials(_ fd: Int32) throws(ClusterError) -> (pid: pid_t, uid: uid_t) {
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        guard cshim_peer_credentials(fd, &pid, &uid, &gid) == 0 else {
            throw ClusterError.errno("cannot read peer credentials")
        }
        return (pid, uid)
    }

    /// Accepts only peers running as this user: the socket directory's 0700 mode already keeps others
    /// out; this holds even if the directory's mode were changed.
    static func peerIsSameUser(_ fd: Int32) -> Bool {
        guard let cred = try? peerCredentials(fd) else { return false }
        return cred.uid == getuid()
    }

    /// Sends all of `bytes`, the descriptor `attach` (or -1) with the first part.
    static func sendAll(_ fd: Int32, _ bytes: [UInt8], attach: Int32) throws(ClusterError) {
        var offset = 0
        var attach = attach
        while offset < bytes.count || attach >= 0 {
            let n = bytes.withUnsafeBytes { raw in
                cshim_send_with_fd(fd, raw.baseAddress! + offset, raw.count - offset, attach)
            }
            guard n >= 0 else { throw ClusterError.errno("cannot send on actor connection") }
            offset += n
            attach = -1
        }
    }

    private static func makeSocket() throws(ClusterError) -> UniqueFileDescriptor {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClusterError.errno("cannot create socket") }
        return UniqueFileDescriptor(adopting: fd)
    }

    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws(ClusterError) -> Void) throws(ClusterError) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else {
            throw ClusterError("socket path \(path) is longer than the \(capacity - 1) bytes a Unix socket allows; set a shorter socket directory")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        try withUnsafePointer(to: &addr) { (p) throws(ClusterError) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa) throws(ClusterError) in
                try body(sa, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}

/// What an accept loop does after a failed `accept`: retry at once after a transient failure of one
/// connection, wait before retrying when the process or the system is out of descriptors or memory
/// (retrying at once would spin a core until something else closes a descriptor), stop otherwise.
struct AcceptBackoff {
    enum Action: Equatable {
        case retry
        case wait(Duration)
        case stop
    }

    /// The first wait; each consecutive resource failure doubles it, up to `longest`.
    static let shortest: Duration = .milliseconds(1)
    static let longest: Duration = .milliseconds(200)
    private var delay: Duration = .zero

    mutating func next(after code: Int32) -> Action {
        switch code {
        case EINTR, ECONNABORTED, EPROTO:
            return .retry
        case EMFILE, ENFILE, ENOBUFS, ENOMEM:
            delay = delay == .zero ? Self.shortest : min(delay * 2, Self.longest)
            return .wait(delay)
        default:
            return .stop
        }
    }
}

extension Duration {
    var inMicroseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}

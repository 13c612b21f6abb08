#if canImport(Glibc)
import Glibc
#endif
import CShims
import Synchronization

/// Where another process fetches a file descriptor this process lent through its ``DescriptorExchange``:
/// the lender's pid and exchange nonce (which name its socket), the descriptor's number in the
/// exchange, and a 128-bit secret that must be presented with it. 36 bytes in a ``MemoryHandle``'s
/// opaque bytes; a value, so it travels through any control plane as a CUDA IPC handle would.
public struct DescriptorReference: Sendable, Hashable {
    public var pid: Int32
    public var exchange: UInt64
    public var id: UInt64
    public var secret: [UInt64]

    public static let byteCount = 4 + 8 + 8 + 16

    public var bytes: [UInt8] {
        var out = OpaqueBytesWriter()
        out.put(pid); out.put(exchange); out.put(id); out.put(secret[0]); out.put(secret[1])
        return out.bytes
    }

    /// Reads the first ``byteCount`` bytes of `bytes`.
    public init(bytes: [UInt8]) throws(ComputeError) {
        guard bytes.count >= Self.byteCount else {
            throw ComputeError("malformed descriptor reference (\(bytes.count) bytes, expected at least \(Self.byteCount))")
        }
        var input = OpaqueBytesReader(bytes)
        pid = input.get(Int32.self)
        exchange = input.get(UInt64.self)
        id = input.get(UInt64.self)
        secret = [input.get(UInt64.self), input.get(UInt64.self)]
    }

    init(pid: Int32, exchange: UInt64, id: UInt64, secret: [UInt64]) {
        (self.pid, self.exchange, self.id, self.secret) = (pid, exchange, id, secret)
    }

    /// The abstract Unix socket the lender listens on.
    var socketName: [UInt8] { Array("colocate-fd.\(pid).\(String(exchange, radix: 16))".utf8) }
}

/// Lends file descriptors of this process to other processes of the same user, by ``DescriptorReference``.
///
/// Why: a memory object shared as a file descriptor (a CUDA virtual-memory allocation, a memfd) can
/// only reach another process through `SCM_RIGHTS` on a Unix socket. The exchange listens on an
/// abstract socket named by its pid and a random nonce; a peer connects, presents the id and secret,
/// and gets a duplicate of the descriptor. Handles stay plain values (like CUDA IPC handles) that any
/// control plane can carry, and no process needs the right to trace another (`pidfd_getfd` would).
/// Each connection is served on a thread of its own, bounded by a timeout, so a client that connects
/// and says nothing delays nobody else; the peer's uid is checked before a byte of its request is read.
public final class DescriptorExchange: @unchecked Sendable {
    /// This process's exchange, started on first use.
    public static func shared() throws(ComputeError) -> DescriptorExchange { try started.get() }
    private static let started = Result { () throws(ComputeError) in try DescriptorExchange() }

    private let pid: Int32
    private let nonce: UInt64
    private let listener: Int32
    /// A lent descriptor and its secret; the descriptor is closed when the entry goes (withdrawn).
    private final class Lent: Sendable {
        let fd: Int32
        let secret: [UInt64]
        init(_ fd: consuming UniqueFileDescriptor, secret: [UInt64]) {
            self.fd = fd.take()
            self.secret = secret
        }
        deinit { _ = close(fd) }
    }
    private let lent = Mutex<(next: UInt64, byID: [UInt64: Lent])>((1, [:]))

    private init() throws(ComputeError) {
        pid = getpid()
        var random = SystemRandomNumberGenerator()
        nonce = random.next()
        let name = DescriptorReference(pid: pid, exchange: nonce, id: 0, secret: [0, 0]).socketName
        let listening = name.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { cshim_listen_abstract($0.baseAddress, $0.count, 64) }
        }
        guard listening >= 0 else {
            throw ComputeError(.systemCall, "cannot start the descriptor exchange: \(String(cString: strerror(errno)))")
        }
        let owned = UniqueFileDescriptor(adopting: listening)  // closed if the thread cannot start
        listener = listening
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { argument in
            Unmanaged<DescriptorExchange>.fromOpaque(argument!).takeRetainedValue().serve()
        }, context)
        guard rc == 0 else {
            Unmanaged<DescriptorExchange>.fromOpaque(context).release()
            throw ComputeError(.systemCall, "cannot start the descriptor exchange's thread (pthread_create: \(rc))")
        }
        pthread_detach(thread)
        _ = owned.take()  // the exchange listens for the rest of the process's life
    }

    /// Lends `fd`, which the exchange owns from now on: it is closed by ``withdraw(_:)``.
    public func lend(_ fd: consuming UniqueFileDescriptor) -> DescriptorReference {
        var random = SystemRandomNumberGenerator()
        let secret: [UInt64] = [random.next(), random.next()]
        let entry = Lent(fd, secret: secret)
        let id = lent.withLock { state in
            let id = state.next
            state.next += 1
            state.byID[id] = entry
            return id
        }
        return DescriptorReference(pid: pid, exchange: nonce, id: id, secret: secret)
    }

    /// Stops lending the descriptor and closes it (with its entry). Peers that fetched it keep their
    /// own duplicates.
    public func withdraw(_ reference: DescriptorReference) {
        _ = lent.withLock { $0.byID.removeValue(forKey: reference.id) }
    }

    /// Number of descriptors lent now.
    public var lentCount: Int { lent.withLock { $0.byID.count } }

    // The request is the id and secret (24 bytes); the answer one status byte, with the descriptor
    // attached when it is `granted`.
    private enum Answer: UInt8 {
        case granted = 0, unknown = 1, otherUser = 2
    }
    private static let requestBytes = 24
    private static let serveTimeoutMilliseconds: Int32 = 2_000
    /// Connections served at once; beyond it a new one is closed unanswered (its fetch fails and
    /// names the reason) rather than starting threads without bound.
    static let maximumConcurrentRequests = 64
    private let serving = Atomic<Int>(0)

    private func serve() -> Never {
        var idleMicroseconds: UInt32 = 0
        while true {
            let connection = cshim_accept_cloexec(listener)
            guard connection >= 0 else {
                // Out of descriptors or memory: wait (doubling, up to 200 ms) rather than spin.
                // EINTR, ECONNABORTED: take the next one at once.
                switch errno {
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    idleMicroseconds = min(max(idleMicroseconds * 2, 1_000), 200_000)
                    usleep(idleMicroseconds)
                default: break
                }
                continue
            }
            idleMicroseconds = 0
            guard serving.add(1, ordering: .relaxed).newValue <= Self.maximumConcurrentRequests else {
                serving.subtract(1, ordering: .relaxed)
                close(connection)
                continue
            }
            if !startDetachedThread({ [self] in
                answer(connection)
                close(connection)
                serving.subtract(1, ordering: .relaxed)
            }) {
                serving.subtract(1, ordering: .relaxed)
                close(connection)
            }
        }
    }

    private func answer(_ connection: Int32) {
        _ = cshim_set_socket_timeouts(connection, Self.serveTimeoutMilliseconds)
        var peerPID: pid_t = 0, peerUID: uid_t = 0, peerGID: gid_t = 0
        guard cshim_peer_credentials(connection, &peerPID, &peerUID, &peerGID) == 0 else { return }
        // Who asks is known before anything is read: a process of another user gets its refusal
        // without this process reading (or waiting for) a byte from it.
        guard peerUID == geteuid() || peerUID == 0 else {
            var byte = Answer.otherUser.rawValue
            _ = cshim_send_with_fd(connection, &byte, 1, -1)
            return
        }
        var request = [UInt8](repeating: 0, count: Self.requestBytes)
        guard readFully(connection, &request) else { return }
        var input = OpaqueBytesReader(request)
        let id = input.get(UInt64.self), secret = [input.get(UInt64.self), input.get(UInt64.self)]
        // Sent under the lock, so a concurrent withdraw cannot close the descriptor mid-send.
        let granted = lent.withLock { state in
            guard let entry = state.byID[id], entry.secret == secret else { return false }
            var byte = Answer.granted.rawValue
            _ = cshim_send_with_fd(connection, &byte, 1, entry.fd)
            return true
        }
        if !granted {
            var byte = Answer.unknown.rawValue
            _ = cshim_send_with_fd(connection, &byte, 1, -1)
        }
    }

    /// Runs `body` on a new detached thread; false when none could be started.
    private func startDetachedThread(_ body: @escaping @Sendable () -> Void) -> Bool {
        final class Box: @unchecked Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = pthread_create(&thread, nil, { argument in
            Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue().body()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(context).release()
            return false
        }
        pthread_detach(thread)
        return true
    }

    /// Fetches the descriptor `reference` names from its lender (which may be this process): a new
    /// close-on-exec descriptor the caller owns. Fails with a one-line reason when the lender has
    /// exited, withdrew it, belongs to another user or does not answer within `timeoutMilliseconds`.
    public static func fetch(_ reference: DescriptorReference, timeoutMilliseconds: Int32 = 10_000) throws(ComputeError) -> UniqueFileDescriptor {
        let pid = reference.pid
        let opened = reference.socketName.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { cshim_connect_abstract($0.baseAddress, $0.count, timeoutMilliseconds) }
        }
        guard opened >= 0 else {
            let reason = errno
            if kill(pid, 0) != 0 && errno == ESRCH {
                throw ComputeError(.peerGone, "process \(pid) has exited, and the memory it shared with it")
            }
            throw ComputeError("cannot reach the descriptor exchange of process \(pid): \(String(cString: strerror(reason))) "
                + "(the handle is not from this machine, or that process did not share it)")
        }
        let connection = UniqueFileDescriptor(adopting: opened)  // closed on every return below
        var request = OpaqueBytesWriter()
        request.put(reference.id); request.put(reference.secret[0]); request.put(reference.secret[1])
        var sent = 0
        while sent < request.bytes.count {
            let n = request.bytes.withUnsafeBytes { send(connection.rawValue, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ComputeError("cannot ask process \(pid) for shared memory: \(String(cString: strerror(errno)))") }
            sent += n
        }
        var status: UInt8 = 255
        var fd: Int32 = -1
        let n = cshim_recv_with_fd(connection.rawValue, &status, 1, &fd)
        let recvError = errno
        if n == 1, status == Answer.granted.rawValue, fd >= 0 { return UniqueFileDescriptor(adopting: fd) }
        let unwanted = UniqueFileDescriptor(adopting: fd)  // a descriptor that came with a refusal: closed
        _ = unwanted.rawValue
        switch n < 0 ? nil : Answer(rawValue: status) {
        case .unknown: throw ComputeError(.peerGone, "process \(pid) no longer shares that memory (it was freed)")
        case .otherUser: throw ComputeError("process \(pid) refused to share memory with a process of another user")
        default:
            let why = n < 0 ? (recvError == EAGAIN || recvError == EWOULDBLOCK ? "no answer within \(timeoutMilliseconds) ms" : String(cString: strerror(recvError)))
                : "the connection closed"
            throw ComputeError("cannot fetch shared memory from process \(pid): \(why)")
        }
    }

    private func readFully(_ fd: Int32, _ buffer: inout [UInt8]) -> Bool {
        var got = 0
        while got < buffer.count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, $0.count - got, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            got += n
        }
        return true
    }
}

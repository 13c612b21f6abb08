#if canImport(Glibc)
import Glibc
#endif
import Compute
import Synchronization

/// The accepting end of the TCP control plane: accepts connections on its own thread, authenticates
/// each with the cluster secret on a thread of its own (a slow or silent peer holds up nobody else),
/// and hands over only the peers that proved the secret. Everyone else is disconnected; `refused`
/// counts them (for tests and diagnostics).
final class TCPListener: Sendable {
    let address: TCPAddress
    private let fd: Int32
    private let isShutDown = Atomic(false)
    private let refusedCount = Atomic(0)

    /// Listens on `bindHost` (an address of this machine, "0.0.0.0" for all) and any free port, and
    /// advertises `advertisedHost` with that port. `onPeer` gets each authenticated descriptor.
    init(bindHost: String, advertisedHost: String, secret: ClusterSecret,
         onPeer: @escaping @Sendable (Int32) -> Void) throws(ClusterError) {
        let (fd, port) = try TCPSocket.listen(host: bindHost)
        self.fd = fd
        address = TCPAddress(host: advertisedHost, port: port)
        startThread(name: "colocate.tcp-accept") { [self] in
            while let peer = TCPSocket.accept(fd) {
                startThread(name: "colocate.tcp-auth") { [self] in
                    do {
                        try secret.authenticateClient(peer)
                        onPeer(peer)
                    } catch {
                        refusedCount.add(1, ordering: .relaxed)
                        close(peer)
                    }
                }
            }
            close(fd)
        }
    }

    /// Peers disconnected for failing authentication.
    var refused: Int { refusedCount.load(ordering: .relaxed) }

    /// Stops accepting (the accept thread closes the socket). Idempotent.
    func shutDown() {
        if !isShutDown.exchange(true, ordering: .relaxed) { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
    }

    deinit { shutDown() }
}

extension Connection {
    /// Dials `address`, proves the cluster secret and checks the server holds it too. The
    /// connection is not started.
    static func dialTCP(_ address: TCPAddress, secret: ClusterSecret, hooks: Hooks) throws(ClusterError) -> Connection {
        let fd = try TCPSocket.connect(address)
        do {
            try secret.authenticateServer(fd, peer: "\(hooks.peerName) at \(address)")
        } catch {
            Glibc.close(fd)
            throw error
        }
        return Connection(fd: UniqueFileDescriptor(adopting: fd), hooks: hooks, carriesDescriptors: false)
    }
}

/// Where a listener's authenticated peers go, set once their receiver exists (the listener starts
/// before the cluster that receives them is fully initialized). Peers arriving earlier are closed.
final class PeerSink: Sendable {
    private let body = Mutex<(@Sendable (Int32) -> Void)?>(nil)

    func set(_ receiver: @escaping @Sendable (Int32) -> Void) { body.withLock { $0 = receiver } }

    @Sendable func deliver(_ fd: Int32) {
        if let receiver = body.withLock({ $0 }) { receiver(fd) } else { close(fd) }
    }
}

import Compute
import Synchronization

/// What an actor knows about where it runs, given to its initializer: its device and share, its rank
/// in its group, and the means to call the driver and other actors.
public final class WorkerContext: Sendable {
    public let actorName: String
    public let actorType: String
    /// The device assigned to this process (nil when the actor asked for none).
    public let device: Device?
    /// This actor's share of `device` (0 when none).
    public let deviceFraction: Double
    /// Bytes of the device this actor may use: its share of the device's capacity (0 without a device).
    public var memoryBudget: Int {
        guard let device else { return 0 }
        return device.share(deviceFraction)
    }
    /// The placement-group bundle, when placed in one.
    public let bundleIndex: Int?
    /// Rank within its group (0 for a single actor).
    public let rank: Int
    public let worldSize: Int
    /// The group's name (nil for a single actor).
    public let groupName: String?
    /// Addresses of every rank of the group, by rank (`peers[rank]` is this actor).
    public let peers: [ActorAddress]
    /// The driver: calls go to `ClusterOptions.driverHandlers`.
    public let driver: ActorRef
    /// The driver's private socket directory.
    public let socketDirectory: String

    private let connections = Mutex<[String: ActorRef]>([:])
    private let secret: ClusterSecret?
    private let serve: @Sendable (Connection) -> Void

    init(environment: WorkerEnvironment, actorType: String, rank: Int, worldSize: Int, groupName: String?,
         peers: [ActorAddress], driver: ActorRef, secret: ClusterSecret? = nil, serve: @escaping @Sendable (Connection) -> Void) {
        self.secret = secret
        actorName = environment.actorName
        self.actorType = actorType
        device = environment.device
        deviceFraction = environment.deviceFraction
        bundleIndex = environment.bundleIndex
        self.rank = rank
        self.worldSize = worldSize
        self.groupName = groupName
        self.peers = peers
        self.driver = driver
        socketDirectory = environment.socketDirectory
        self.serve = serve
    }

    /// A reference to the actor at `address` (one connection per address, reused). The connection
    /// also answers calls the peer makes back on it.
    public func connect(to address: ActorAddress) throws -> ActorRef {
        if let ref = connections.withLock({ $0[address.path] }), ref.connection.failure == nil { return ref }
        let connection: Connection
        var pid: Int32?
        if let tcp = address.tcp.flatMap(TCPAddress.init), let host = address.host, host != WorkerEnvironment.hostIdentity {
            // Another host: TCP, authenticated by the cluster secret.
            guard let secret else { throw ClusterError("actor '\(address.name)' is on another host, and this worker has no cluster secret to reach it over TCP") }
            connection = try Connection.dialTCP(tcp, secret: secret, hooks: Connection.Hooks(peerName: address.name))
        } else {
            let fd = try UnixSocket.connect(path: address.path)
            pid = try? UnixSocket.peerCredentials(fd.rawValue).pid
            connection = Connection(fd: fd, hooks: Connection.Hooks(peerName: address.name))
        }
        serve(connection)
        let ref = ActorRef(name: address.name, address: address, pid: pid, device: nil, deviceFraction: 0,
                           connection: connection, control: nil)
        connections.withLock { $0[address.path] = ref }
        return ref
    }

    /// A reference to rank `rank` of this actor's group.
    public func peer(rank: Int) throws -> ActorRef {
        guard peers.indices.contains(rank) else {
            throw ClusterError("rank \(rank) is out of range; group '\(groupName ?? actorName)' has ranks 0..<\(peers.count)")
        }
        return try connect(to: peers[rank])
    }
}

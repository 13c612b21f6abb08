import Compute

/// Every actor answers this: which device it runs on, and its process id.
public struct ReportDevice: RemoteCall {
    public struct Reply: Codable, Sendable, Hashable {
        public var actor: String
        public var pid: Int32
        /// The device's UUID (nil when the actor holds no device).
        public var uuid: String?
        public var device: Device?
        public var deviceFraction: Double
        /// `CUDA_VISIBLE_DEVICES` as the process sees it (nil when unset).
        public var cudaVisibleDevices: String?
    }
    public static let name = "colocate.reportDevice"
    public init() {}
}

/// The cheapest call there is: no arguments, no reply, answered at once by any actor.
public struct Ping: RemoteCall {
    public typealias Reply = Empty
    public static let name = "colocate.ping"
    public init() {}
}

/// A worker's first message to its driver, on the connection it opens.
struct WorkerHello: RemoteCall {
    typealias Reply = Empty
    static let name = "colocate.hello"
    var actorID: Int
    var pid: Int32
    /// Where the worker listens for calls from peers.
    var listenPath: String
    /// With a TCP control plane: where peers on other hosts reach it (`tcp://host:port`), and which
    /// host it is on (`ActorAddress.host`).
    var listenTCP: String? = nil
    var host: String? = nil
}

/// The driver's first call on a worker: which actor to construct, and with what.
struct InitializeActor: RemoteCall {
    typealias Reply = Empty
    static let name = "colocate.initialize"
    var actorType: String
    /// The actor's `Config`, encoded (JSON text, kept as text so it is not re-encoded byte by byte).
    var config: String
    var rank: Int
    var worldSize: Int
    var groupName: String?
    /// Addresses of every rank of the actor's group, by rank (just itself for a single actor).
    var peers: [ActorAddress]
}

/// Asks a worker to exit after replying.
struct StopWorker: RemoteCall {
    typealias Reply = Empty
    static let name = "colocate.stop"
}

/// Where an actor can be reached: its name and the path of the socket it listens on.
public struct ActorAddress: Codable, Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var path: String
    /// With a TCP control plane (`Cluster.ray`): `tcp://host:port` for peers on other hosts, and the
    /// identity of the actor's host (its machine id). Peers on the same host use `path`.
    public var tcp: String?
    public var host: String?
    public init(name: String, path: String, tcp: String? = nil, host: String? = nil) {
        self.name = name
        self.path = path
        self.tcp = tcp
        self.host = host
    }
    public var description: String { "\(name) at \(path)" }
}

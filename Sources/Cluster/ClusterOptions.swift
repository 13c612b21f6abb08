/// How a local cluster starts its workers and what it offers them.
public struct ClusterOptions: Sendable {
    /// The executable started for every worker (with `workerArguments`). Default: this very
    /// executable, so driver and workers always run the same code.
    public var workerExecutable: String = "/proc/self/exe"
    /// Arguments after the executable; `colocate worker` by default.
    public var workerArguments: [String] = ["worker"]
    /// Enumerates CUDA GPUs for `DeviceSpec.cuda` (supplied by the CUDA backend).
    public var cudaDeviceProvider: (any DeviceProvider)?
    /// CPU cores the node offers to placement-group bundles (default: the cores of this machine).
    public var cpus: Int?
    /// Where the private socket directory is made (default: `$XDG_RUNTIME_DIR`, else /tmp).
    public var socketParentDirectory: String?
    /// How long a worker may take from spawn to ready before it is killed.
    public var workerStartTimeout: Duration = .seconds(30)
    /// How long an actor call waits for its reply unless the call gives its own `timeout`. A worker
    /// that hangs while alive fails the call with `ClusterError` `.timedOut` naming the actor.
    public var callTimeout: Duration = ActorRef.defaultCallTimeout
    /// How long a stopping worker may take to exit before it is killed.
    public var stopGracePeriod: Duration = .seconds(2)
    /// Extra environment for every worker.
    public var environment: [String: String] = [:]
    /// Calls the driver answers for its workers (`WorkerContext.driver.call(...)`); run concurrently.
    public var driverHandlers = Handlers()
    /// How workers reach the driver: Unix sockets (one host, the default) or TCP authenticated by a
    /// per-cluster secret (what `Cluster.ray` uses; on one host, for measuring it).
    public var controlPlane: ControlPlane = .unix

    public init() {}
}

/// The transport between a driver and its workers.
public enum ControlPlane: Sendable, Equatable {
    /// A Unix socket in the driver's private directory: workers on this host only.
    case unix
    /// TCP on `bindHost` (any free port), advertised to workers as `advertisedHost`, each connection
    /// authenticated by the cluster secret (`ClusterSecret`).
    case tcp(bindHost: String, advertisedHost: String)
}

import Compute
import Foundation

/// The environment a driver sets for a worker before it starts, and its parsing on the worker side.
public struct WorkerEnvironment: Sendable {
    /// Pid of the driver; the worker exits at once if its parent is not (or no longer) this process.
    public static let driverPIDKey = "COLOCATE_DRIVER_PID"
    /// Path of the driver's socket.
    public static let driverSocketKey = "COLOCATE_DRIVER_SOCKET"
    /// The driver's private socket directory; the worker listens for peers there.
    public static let socketDirectoryKey = "COLOCATE_SOCKET_DIR"
    public static let actorIDKey = "COLOCATE_ACTOR_ID"
    public static let actorNameKey = "COLOCATE_ACTOR_NAME"
    /// JSON of the assigned `Device` {kind, ordinal, uuid, capacity}; absent when the actor holds none.
    public static let deviceKey = "COLOCATE_DEVICE"
    /// The actor's share of the device, e.g. `0.4`.
    public static let deviceFractionKey = "COLOCATE_DEVICE_FRACTION"
    /// The bundle index within the placement group, when placed in one.
    public static let bundleIndexKey = "COLOCATE_BUNDLE_INDEX"
    /// The address of this host that peers on other hosts dial (set by a Ray hosting actor).
    public static let advertiseHostKey = "COLOCATE_ADVERTISE_HOST"
    /// What "the same host" means for choosing Unix sockets over TCP between peers: the Ray node id
    /// under Ray (so simulated nodes on one machine talk as separate hosts would), else the machine id.
    public static let hostIdentityKey = "COLOCATE_HOST_ID"

    /// This process's host identity (see `hostIdentityKey`). `process` makes every process a host of
    /// its own, so that one machine exercises the paths between hosts (tests, figures).
    public static var hostIdentity: String {
        if let id = ProcessInfo.processInfo.environment[hostIdentityKey], !id.isEmpty {
            return id == "process" ? "process:\(VirtualCPUDevices.machineIdentity):\(getpid())" : id
        }
        return VirtualCPUDevices.machineIdentity
    }

    static let allKeys = [driverPIDKey, driverSocketKey, socketDirectoryKey, actorIDKey, actorNameKey,
                          deviceKey, deviceFractionKey, bundleIndexKey]

    public var driverPID: Int32
    public var driverSocket: String
    public var socketDirectory: String
    public var actorID: Int
    public var actorName: String
    public var device: Device?
    public var deviceFraction: Double
    public var bundleIndex: Int?

    /// Reads the variables from `environment`; throws naming the first missing or malformed one.
    public init(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws(ClusterError) {
        func required(_ key: String) throws(ClusterError) -> String {
            guard let v = environment[key], !v.isEmpty else {
                throw ClusterError("\(key) is not set: `colocate worker` is started by a cluster driver, not by hand")
            }
            return v
        }
        guard let pid = Int32(try required(WorkerEnvironment.driverPIDKey)) else {
            throw ClusterError("\(WorkerEnvironment.driverPIDKey) is not a pid")
        }
        guard let id = Int(try required(WorkerEnvironment.actorIDKey)) else {
            throw ClusterError("\(WorkerEnvironment.actorIDKey) is not an integer")
        }
        driverPID = pid
        actorID = id
        driverSocket = try required(WorkerEnvironment.driverSocketKey)
        socketDirectory = try required(WorkerEnvironment.socketDirectoryKey)
        actorName = try required(WorkerEnvironment.actorNameKey)
        if let json = environment[WorkerEnvironment.deviceKey], !json.isEmpty {
            device = try WireCodec.decode(Device.self, from: Array(json.utf8), what: WorkerEnvironment.deviceKey)
        }
        deviceFraction = environment[WorkerEnvironment.deviceFractionKey].flatMap(Double.init) ?? 0
        bundleIndex = environment[WorkerEnvironment.bundleIndexKey].flatMap(Int.init)
    }

    /// The variables for a worker, as the driver sets them.
    static func variables(
        driverSocket: String, socketDirectory: String, actorID: Int, actorName: String,
        device: Device?, share: DeviceShare, bundleIndex: Int?
    ) throws(ClusterError) -> [String: String] {
        var env = [
            driverPIDKey: String(getpid()),
            driverSocketKey: driverSocket,
            socketDirectoryKey: socketDirectory,
            actorIDKey: String(actorID),
            actorNameKey: actorName,
        ]
        if let device {
            env[deviceKey] = String(decoding: try WireCodec.encode(device), as: UTF8.self)
            env[deviceFractionKey] = share.description
            // By UUID: ordinals shift when the driver itself runs under CUDA_VISIBLE_DEVICES.
            if device.kind == .cuda { env["CUDA_VISIBLE_DEVICES"] = device.uuid }
        }
        if let bundleIndex { env[bundleIndexKey] = String(bundleIndex) }
        return env
    }
}

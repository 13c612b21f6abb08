#if canImport(Glibc)
import Glibc
#endif
import Compute
import Foundation

extension Cluster {
    /// A cluster on Ray, behind the same API as `Cluster.local`: placement groups are Ray placement
    /// groups (PACK, SPREAD, STRICT_PACK, STRICT_SPREAD; an infeasible one fails after
    /// `RayOptions.placementTimeout` with Ray's reason), each actor runs in a `colocate worker` hosted
    /// by a thin Ray actor on the device Ray gave it (by UUID), and calls go straight between this
    /// driver and the workers over TCP, authenticated by a secret this driver makes.
    ///
    /// `address` is Ray's: `auto` (the cluster `ray start` made on this host), `HOST:PORT` of a head
    /// node, or `local` to start a single-node Ray inside the helper. Needs `bash python/install-ray.sh`.
    public static func ray(address: String = "auto", options: ClusterOptions = ClusterOptions(),
                           rayOptions: RayOptions = RayOptions()) async throws -> Cluster {
        let backend = try await RayBackend(address: address, options: rayOptions)
        var options = options
        options.controlPlane = .tcp(bindHost: rayOptions.bindHost, advertisedHost: backend.advertisedHost)
        do {
            return try Cluster(devices: [], options: options, ray: backend)
        } catch {
            await backend.shutdown()
            throw error
        }
    }

    /// `Cluster.ray(address:)` when `rayAddress` is given (`--cluster ray:ADDRESS`), else `Cluster.local`.
    public static func make(rayAddress: String?, devices: DeviceSpec, options: ClusterOptions = ClusterOptions()) async throws -> Cluster {
        if let rayAddress { return try await Cluster.ray(address: rayAddress, options: options) }
        return try Cluster.local(devices: devices, options: options)
    }

    /// Whether placement and workers go through Ray.
    public var isRay: Bool { ray != nil }

    /// The devices a layout is planned over: this host's on a local cluster; on Ray, `count` (default:
    /// all the cluster offers) stand-ins of Ray's device kind, one per bundle to ask for. Their real
    /// identity (UUID, node) is known once Ray places the bundles (`PlacementGroup.bundleDevices`,
    /// and each actor's `ReportDevice`).
    public func layoutDevices(count: Int? = nil) -> [Device] {
        guard let ray else { return devices }
        return (0..<(count ?? ray.deviceCount)).map { i in
            Device(kind: ray.deviceKind, ordinal: i, uuid: "ray-bundle-\(i)", capacity: 0)
        }
    }

    /// The TCP address workers dial (with a TCP control plane).
    public var controlAddress: TCPAddress? { tcp?.listener.address }

    /// The executable a hosting actor starts: `/proc/self/exe` means this very file, by its real path.
    static func resolvedExecutable(_ path: String) -> String {
        guard path == "/proc/self/exe" else { return path }
        return URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    }

    /// The worker's variables for a hosting actor to pass on: the driver's TCP address instead of its
    /// socket; the actor adds its own pid, a socket directory on its host and the device Ray gave it.
    func rayWorkerEnvironment(actorID: Int, actorName: String, share: DeviceShare, bundleIndex: Int?) throws(ClusterError) -> [String: String] {
        guard let tcp else { return [:] }
        var env = options.environment
        env.merge(try WorkerEnvironment.variables(
            driverSocket: tcp.listener.address.url, socketDirectory: "-", actorID: actorID, actorName: actorName,
            device: nil, share: share, bundleIndex: bundleIndex)) { _, new in new }
        env[WorkerEnvironment.driverPIDKey] = nil
        env[WorkerEnvironment.socketDirectoryKey] = nil
        return env
    }
}

extension PlacementGroup {
    /// The Ray node id of each bundle once the group is ready (nil on a local cluster).
    public var bundleNodes: [String]? { cluster.bundleNodes(ofGroup: id) }
}

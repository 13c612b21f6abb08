#if canImport(Glibc)
import Glibc
#endif
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
        let backend = try await RayBackend(address: address == "local" ? "local" : address, options: rayOptions)
        do {
            return try Cluster(devices: [], options: options, ray: backend)
        } catch {
            await backend.shutdown()
            throw error
        }
    }

    /// Whether placement and workers go through Ray.
    public var isRay: Bool { ray != nil }

    /// The TCP address workers dial (Ray clusters only).
    public var controlAddress: TCPAddress? { ray?.listener.address }

    /// The executable a hosting actor starts: `/proc/self/exe` means this very file, by its real path.
    static func resolvedExecutable(_ path: String) -> String {
        guard path == "/proc/self/exe" else { return path }
        return URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    }

    /// The worker's variables for a hosting actor to pass on: the driver's TCP address instead of its
    /// socket; the actor adds its own pid, a socket directory on its host and the device Ray gave it.
    func rayWorkerEnvironment(actorID: Int, actorName: String, share: DeviceShare, bundleIndex: Int?) throws(ClusterError) -> [String: String] {
        guard let ray else { return [:] }
        var env = options.environment
        env.merge(try WorkerEnvironment.variables(
            driverSocket: ray.listener.address.url, socketDirectory: "-", actorID: actorID, actorName: actorName,
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

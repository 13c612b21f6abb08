import Compute

/// Bundles of resources reserved together (Ray's placement group). Created pending; `ready()` returns
/// once every bundle has its device and CPUs. `remove()` stops the actors placed in it and frees them.
public final class PlacementGroup: Sendable, CustomStringConvertible {
    public let name: String
    public let bundles: [ResourceBundle]
    public let strategy: PlacementStrategy
    let id: Int
    let cluster: Cluster

    init(name: String, bundles: [ResourceBundle], strategy: PlacementStrategy, id: Int, cluster: Cluster) {
        self.name = name
        self.bundles = bundles
        self.strategy = strategy
        self.id = id
        self.cluster = cluster
    }

    public var description: String { "PlacementGroup(\(name), \(bundles.count) bundles, \(strategy))" }

    /// Whether every bundle is placed.
    public var isReady: Bool { cluster.groupState(id) == .created }

    /// Waits until the group is placed. Throws if it is removed or the cluster shuts down first.
    public func ready() async throws {
        guard try await cluster.waitForGroup(id, name: name, deadline: nil) else {
            throw ClusterError("placement group '\(name)' never became ready")
        }
    }

    /// Waits up to `timeout` for the group to be placed; returns whether it is.
    public func wait(timeout: Duration) async -> Bool {
        (try? await cluster.waitForGroup(id, name: name, deadline: .now + timeout)) ?? false
    }

    /// The device of each bundle once placed (nil for bundles without a GPU or before `ready`).
    public var bundleDevices: [Device?] { cluster.bundleDevices(ofGroup: id) }

    /// Stops the actors placed in the group, then frees its devices and CPUs. Idempotent.
    public func remove() async {
        await cluster.removeGroup(id)
    }
}

/// Where an actor goes: a bundle of a placement group and the share of the bundle's device it takes.
public struct ActorPlacement: Sendable {
    public var group: PlacementGroup
    public var bundleIndex: Int
    /// 0 < fraction <= 1 (precision 1e-4), or 0 for an actor that uses no device.
    public var deviceFraction: Double
    /// When the share does not fit now: nil fails at once naming what the bundle holds; a duration
    /// waits up to that long for other actors to release theirs.
    public var waitTimeout: Duration?

    public init(group: PlacementGroup, bundleIndex: Int, deviceFraction: Double = 0, waitTimeout: Duration? = nil) {
        self.group = group
        self.bundleIndex = bundleIndex
        self.deviceFraction = deviceFraction
        self.waitTimeout = waitTimeout
    }

    func share() throws(ClusterError) -> DeviceShare {
        guard deviceFraction != 0 else { return .zero }
        return try DeviceShare(fraction: deviceFraction)
    }
}

import Compute

/// A dry run of placement: whether a set of device shares fits a placement group's bundles, checked
/// with the accounting the cluster itself uses, without starting anything. Planners above the cluster
/// (`Colocation.ColocatedLayout`) use it, so a plan they accept also spawns.
public enum PlacementCheck {
    /// One holder's share of one bundle's device.
    public struct Reservation: Sendable {
        public var bundleIndex: Int
        public var share: DeviceShare
        /// Named in the refusal.
        public var holderName: String
        public init(bundleIndex: Int, share: DeviceShare, holderName: String) {
            self.bundleIndex = bundleIndex
            self.share = share
            self.holderName = holderName
        }
    }

    /// Throws the reason when `reservations`, made in order, do not fit a group of `bundles` over
    /// `devices` with `strategy`.
    public static func check(devices: [Device], bundles: [ResourceBundle], strategy: PlacementStrategy = .pack,
                             reservations: [Reservation]) throws(ClusterError) {
        var ledger = ResourceLedger(devices: devices, cpus: 0)
        let group = try ledger.createGroup(name: "check", bundles: bundles, strategy: strategy)
        for (id, r) in reservations.enumerated() {
            let outcome = try ledger.reserveShare(group: group, bundle: r.bundleIndex, share: r.share,
                                                  holderID: id, holderName: r.holderName)
            if case .busy(let why) = outcome { throw ClusterError(why) }
        }
    }
}

import Cluster
import Compute

/// The layout of vLLM's `rlhf_colocate.py`, for any device count: a placement group of one-device
/// bundles; trainer i on bundle i with `trainerFraction` of its device; engines of tensor-parallel size
/// `tp` over consecutive bundles ([0,1], [2,3], …), each rank on its bundle with `workerFraction`.
///
/// Checked with the same accounting the cluster uses, so a layout this accepts also spawns.
public struct ColocatedLayout: Sendable {
    /// One actor process of the layout.
    public struct Slot: Sendable, Hashable {
        /// `trainer-i`, or `engine-e-rankr` (the name `Cluster.spawnGroup(name: "engine-e")` gives rank r).
        public var name: String
        public var bundleIndex: Int
        public var share: DeviceShare
        /// For engine ranks: the engine and the rank within it.
        public var engine: Int?
        public var rank: Int?
    }

    public let devices: [Device]
    public let tensorParallelSize: Int
    public let trainerShare: DeviceShare
    public let workerShare: DeviceShare
    /// Trainer i sits on bundle i.
    public let trainers: [Slot]
    /// Engine e's ranks, in rank order.
    public let engines: [[Slot]]

    /// One `{GPU: 1, CPU: 0}` bundle per device.
    public var bundles: [ResourceBundle] { Array(repeating: ResourceBundle(gpu: 1, cpu: 0), count: devices.count) }

    /// Engine e's bundle indices.
    public func bundleIndices(ofEngine e: Int) -> [Int] { engines[e].map(\.bundleIndex) }

    /// Plans the layout over `devices` (one bundle each). `engineCount` defaults to as many engines as
    /// the bundles hold. Throws the reason when the layout is infeasible.
    public init(devices: [Device], tensorParallelSize tp: Int, trainerFraction: Double, workerFraction: Double,
                engineCount: Int? = nil) throws(ClusterError) {
        let n = devices.count
        guard n >= 1 else { throw ClusterError("infeasible layout: there are no devices") }
        guard tp >= 1 else { throw ClusterError("infeasible layout: tensor-parallel size must be >= 1, got \(tp)") }
        guard n % tp == 0 else {
            throw ClusterError("infeasible layout: tensor-parallel size \(tp) does not divide the \(n) bundles (one per device); use a TP size that divides \(n)")
        }
        let most = n / tp
        let engineCount = engineCount ?? most
        guard engineCount >= 1, engineCount <= most else {
            throw ClusterError("infeasible layout: \(n) bundles hold 1...\(most) engine\(most == 1 ? "" : "s") of TP \(tp); asked for \(engineCount)")
        }
        do {
            trainerShare = try DeviceShare(fraction: trainerFraction)
        } catch {
            throw ClusterError("infeasible layout: trainer \(error.message)")
        }
        do {
            workerShare = try DeviceShare(fraction: workerFraction)
        } catch {
            throw ClusterError("infeasible layout: engine worker \(error.message)")
        }
        let (trainerShare, workerShare) = (self.trainerShare, self.workerShare)
        let trainers = (0..<n).map { Slot(name: "trainer-\($0)", bundleIndex: $0, share: trainerShare) }
        let engines = (0..<engineCount).map { e in
            (0..<tp).map { r in
                Slot(name: "engine-\(e)-rank\(r)", bundleIndex: e * tp + r, share: workerShare, engine: e, rank: r)
            }
        }
        self.devices = devices
        tensorParallelSize = tp
        self.trainers = trainers
        self.engines = engines
        // The cluster's own accounting decides what fits.
        let reservations = (trainers + engines.flatMap { $0 }).map {
            PlacementCheck.Reservation(bundleIndex: $0.bundleIndex, share: $0.share, holderName: $0.name)
        }
        do {
            try PlacementCheck.check(devices: devices, bundles: bundles, reservations: reservations)
        } catch {
            throw ClusterError("infeasible layout: \(error.message)")
        }
    }

    /// Placement of trainer i in `group` (a group made from `bundles`).
    public func trainerPlacement(_ i: Int, in group: PlacementGroup, waitTimeout: Duration? = nil) -> ActorPlacement {
        ActorPlacement(group: group, bundleIndex: trainers[i].bundleIndex, deviceFraction: trainerShare.fraction, waitTimeout: waitTimeout)
    }

    /// Placements of engine e's ranks, for `Cluster.spawnGroup`.
    public func enginePlacements(_ e: Int, in group: PlacementGroup, waitTimeout: Duration? = nil) -> [ActorPlacement?] {
        engines[e].map {
            ActorPlacement(group: group, bundleIndex: $0.bundleIndex, deviceFraction: workerShare.fraction, waitTimeout: waitTimeout)
        }
    }

    /// The layout as a table: bundle → device → actors and their shares.
    public func table() -> String {
        var rows = [["bundle", "device", "memory", "actors (share of device)", "used"]]
        // Grouped once: filtering every slot for every bundle is quadratic in the devices.
        var slotsOfBundle = [[Slot]](repeating: [], count: devices.count)
        for slot in trainers + engines.flatMap({ $0 }) { slotsOfBundle[slot.bundleIndex].append(slot) }
        for (b, device) in devices.enumerated() {
            let slots = slotsOfBundle[b]
            let actors = slots.map { "\($0.name) \($0.share)" }.joined(separator: ", ")
            let used = slots.reduce(DeviceShare.zero) { $0 + $1.share }
            rows.append([String(b), "\(device.uuid) (\(device.kind):\(device.ordinal))", ByteCount.format(device.capacity),
                         actors.isEmpty ? "-" : actors, used.description])
        }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max()! }
        let lines = rows.map { row in
            row.enumerated().map { c, cell in c == row.count - 1 ? cell : cell.padding(to: widths[c]) }.joined(separator: "  ")
        }
        var out = "placement group: \(devices.count) bundles of {GPU: 1, CPU: 0}, PACK; "
        out += "\(trainers.count) trainer\(trainers.count == 1 ? "" : "s") at \(trainerShare); "
        out += "\(engines.count) engine\(engines.count == 1 ? "" : "s") of TP \(tensorParallelSize) at \(workerShare) per rank\n"
        out += lines.joined(separator: "\n")
        for (e, ranks) in engines.enumerated() {
            out += "\nengine-\(e): bundles \(ranks.map { String($0.bundleIndex) }.joined(separator: ",")) (ranks 0..<\(ranks.count))"
        }
        return out
    }
}

extension String {
    fileprivate func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

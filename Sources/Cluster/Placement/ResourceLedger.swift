import Compute

/// The bookkeeping of one node: which devices and CPUs the placement groups reserve, and which device
/// shares the actors placed in each bundle hold. Pure value type: no processes, no waiting — `Cluster`
/// wraps it in a lock and `PlacementCheck` uses it to check a plan without starting anything.
struct ResourceLedger: Sendable {
    enum GroupState: Sendable, Equatable {
        case pending, created
        /// Being removed: its actors are stopping; it still holds its devices, takes no new actors.
        case removing
        case removed
    }

    struct Holder: Sendable {
        var id: Int
        var name: String
        var share: DeviceShare
    }

    struct Group: Sendable {
        var name: String
        var bundles: [ResourceBundle]
        var strategy: PlacementStrategy
        var state: GroupState = .pending
        /// Index into `devices` of each bundle's device, once created (nil for bundles without a GPU).
        var deviceOfBundle: [Int?]
        /// Actors holding shares, per bundle.
        var holders: [[Holder]]
    }

    /// The outcome of asking for a share that is valid in itself.
    enum ShareReservation: Sendable, Equatable {
        /// Granted: the bundle's device (nil when the actor asked for no device).
        case granted(Device?)
        /// Does not fit now; the message says what the bundle holds. Releases may make it fit.
        case busy(String)
    }

    let devices: [Device]
    let cpus: Int
    private(set) var groups: [Int: Group] = [:]
    private var deviceOwner: [Int?]
    private var cpusReserved = 0
    private var pendingOrder: [Int] = []
    private var nextGroupID = 0

    init(devices: [Device], cpus: Int) {
        self.devices = devices
        self.cpus = cpus
        self.deviceOwner = Array(repeating: nil, count: devices.count)
    }

    // MARK: Placement groups

    /// Validates and registers a group, placing it at once when its bundles fit now; otherwise it
    /// stays pending until `schedulePending` finds room. Infeasible groups (that could never fit on
    /// this node) are errors.
    mutating func createGroup(name: String, bundles: [ResourceBundle], strategy: PlacementStrategy) throws(ClusterError) -> Int {
        guard !bundles.isEmpty else { throw ClusterError("placement group '\(name)' has no bundles; give at least one") }
        for (i, b) in bundles.enumerated() { try b.validate(index: i) }
        let gpus = bundles.reduce(0) { $0 + $1.gpu }
        let cpuCount = bundles.reduce(0) { $0 + $1.cpu }
        if strategy == .strictSpread && bundles.count > 1 {
            throw ClusterError("placement group '\(name)' is infeasible: STRICT_SPREAD puts each of its \(bundles.count) bundles on a different node, and this cluster has 1 node; use PACK or SPREAD")
        }
        guard gpus <= devices.count else {
            throw ClusterError("placement group '\(name)' is infeasible: its bundles ask for \(gpus) GPUs and this node has \(devices.count) device\(devices.count == 1 ? "" : "s")")
        }
        guard cpuCount <= cpus else {
            throw ClusterError("placement group '\(name)' is infeasible: its bundles ask for \(cpuCount) CPUs and this node has \(cpus)")
        }
        let id = nextGroupID
        nextGroupID += 1
        groups[id] = Group(name: name, bundles: bundles, strategy: strategy,
                           deviceOfBundle: Array(repeating: nil, count: bundles.count),
                           holders: Array(repeating: [], count: bundles.count))
        pendingOrder.append(id)
        schedulePending()
        return id
    }

    /// Places pending groups, oldest first, wherever they fit now. Returns whether any was placed.
    @discardableResult
    mutating func schedulePending() -> Bool {
        var placedAny = false
        for id in pendingOrder {
            guard var g = groups[id], g.state == .pending else { continue }
            let free = deviceOwner.indices.filter { deviceOwner[$0] == nil }
            let gpus = g.bundles.reduce(0) { $0 + $1.gpu }
            let cpuCount = g.bundles.reduce(0) { $0 + $1.cpu }
            guard gpus <= free.count, cpuCount <= cpus - cpusReserved else { continue }
            // One node: every strategy that is feasible at all places all bundles here, lowest
            // free devices first.
            var next = free.makeIterator()
            for (i, b) in g.bundles.enumerated() where b.gpu == 1 {
                let d = next.next()!
                g.deviceOfBundle[i] = d
                deviceOwner[d] = id
            }
            cpusReserved += cpuCount
            g.state = .created
            groups[id] = g
            placedAny = true
        }
        pendingOrder.removeAll { groups[$0]?.state != .pending }
        return placedAny
    }

    func state(ofGroup id: Int) -> GroupState { groups[id]?.state ?? .removed }

    /// The device of each bundle (nil: no GPU in the bundle, or the group is not placed yet).
    func bundleDevices(ofGroup id: Int) -> [Device?] {
        groups[id]?.deviceOfBundle.map { $0.map { devices[$0] } } ?? []
    }

    /// Starts removing a group: it takes no new actors. Returns the ids of the actors holding shares
    /// in it, for the caller to stop before `removeGroup` frees the devices.
    mutating func beginRemoval(_ id: Int) -> [Int] {
        guard var g = groups[id] else { return [] }
        switch g.state {
        case .pending:
            _ = removeGroup(id)
            return []
        case .created:
            g.state = .removing
            groups[id] = g
            return g.holders.flatMap { $0.map(\.id) }
        case .removing, .removed:
            return []
        }
    }

    /// Releases a group's devices, CPUs and shares. Returns the ids of the actors that held shares.
    mutating func removeGroup(_ id: Int) -> [Int] {
        guard var g = groups[id], g.state != .removed else { return [] }
        if g.state == .created || g.state == .removing {
            for d in g.deviceOfBundle.compactMap({ $0 }) { deviceOwner[d] = nil }
            cpusReserved -= g.bundles.reduce(0) { $0 + $1.cpu }
        }
        let holders = g.holders.flatMap { $0.map(\.id) }
        g.state = .removed
        g.holders = g.holders.map { _ in [] }
        groups[id] = g
        pendingOrder.removeAll { $0 == id }
        schedulePending()
        return holders
    }

    // MARK: Device shares

    /// Asks for `share` of the device of bundle `bundle` for actor `holderName`. Invalid requests
    /// (removed group, bundle out of range, a fraction in a bundle without a GPU) throw; a valid request
    /// that does not fit now is `.busy` with what the bundle holds.
    mutating func reserveShare(group id: Int, bundle: Int, share: DeviceShare, holderID: Int, holderName: String) throws(ClusterError) -> ShareReservation {
        if let refusal = try checkShare(group: id, bundle: bundle, share: share, holderName: holderName) { return refusal }
        // Appended in place: a copy of the group written back would copy its per-bundle holder lists
        // on every reservation, quadratic over a layout's actors (71 s for `plan --devices cpu:30000`).
        groups[id]!.holders[bundle].append(Holder(id: holderID, name: holderName, share: share))
        return .granted(share > .zero ? groups[id]!.deviceOfBundle[bundle].map { devices[$0] } : nil)
    }

    /// Why `share` cannot be granted now (throws when it never can), or nil when it fits.
    private func checkShare(group id: Int, bundle: Int, share: DeviceShare, holderName: String) throws(ClusterError) -> ShareReservation? {
        guard let g = groups[id], g.state != .removed, g.state != .removing else {
            throw ClusterError("placement group \(groups[id].map { "'\($0.name)'" } ?? "#\(id)") was removed; actor '\(holderName)' cannot be placed in it")
        }
        guard g.bundles.indices.contains(bundle) else {
            throw ClusterError("bundle index \(bundle) is out of range for actor '\(holderName)'; placement group '\(g.name)' has bundles 0...\(g.bundles.count - 1)")
        }
        if share > .zero && g.bundles[bundle].gpu == 0 {
            throw ClusterError("bundle \(bundle) of placement group '\(g.name)' holds no GPU (\(g.bundles[bundle])); actor '\(holderName)' cannot ask for a device fraction there")
        }
        guard g.state == .created else {
            return .busy("placement group '\(g.name)' is not ready: its bundles do not fit on the node yet")
        }
        let held = g.holders[bundle].reduce(DeviceShare.zero) { $0 + $1.share }
        if held + share > .whole {
            let device = g.deviceOfBundle[bundle].map { devices[$0].uuid } ?? "?"
            let who = g.holders[bundle].map { "\($0.name): \($0.share)" }.joined(separator: ", ")
            return .busy("bundle \(bundle) of placement group '\(g.name)' (device \(device)) holds \(held) of its device (\(who)); actor '\(holderName)' asked for \(share), only \(DeviceShare.whole - held) is free")
        }
        return nil
    }

    /// Returns an actor's share (no-op when it holds none, e.g. after the group was removed).
    mutating func releaseShare(group id: Int, bundle: Int, holderID: Int) {
        guard var g = groups[id], g.holders.indices.contains(bundle) else { return }
        g.holders[bundle].removeAll { $0.id == holderID }
        groups[id] = g
    }

    /// Shares held in a bundle, for display.
    func holders(group id: Int, bundle: Int) -> [Holder] {
        guard let g = groups[id], g.holders.indices.contains(bundle) else { return [] }
        return g.holders[bundle]
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Compute
import Foundation
import Synchronization

/// How a cluster on Ray finds its helper and reaches its workers.
public struct RayOptions: Sendable {
    /// A Python with Ray and `colocate_ray` (`bash python/install-ray.sh`). Default:
    /// `$COLOCATE_RAY_PYTHON`, else the first `.venv-ray/bin/python` in the current directory, the
    /// executable's directory, or one of their parents.
    public var python: String?
    /// What a bundle's "GPU" is: CUDA GPUs (`{GPU: 1, CPU: 0}` bundles) or virtual CPU devices (a
    /// `colocate_cpu_device` custom resource per device). Default: CPU devices when the cluster
    /// offers `colocate_cpu_device`, else CUDA.
    public var deviceKind: DeviceKind?
    /// The address workers on other hosts dial (default: Ray's IP of this host).
    public var advertisedHost: String?
    /// Where the control plane listens (default: every interface).
    public var bindHost = "0.0.0.0"
    /// How long a placement group may stay pending before it fails with Ray's reason (Ray itself
    /// would wait forever).
    public var placementTimeout: Duration = .seconds(60)
    /// How long joining the Ray cluster may take before it fails (Ray itself retries a missing head
    /// for minutes).
    public var connectTimeout: Duration = .seconds(60)
    /// The `colocate` executable on every host (default: this executable's path, so every host needs
    /// the same build at the same path: a shared file system or image).
    public var workerExecutable: String?

    public init() {}

    /// `$COLOCATE_RAY_PYTHON`, else `.venv-ray/bin/python` found walking up from the working directory
    /// and from this executable.
    public static func defaultPython() -> String? {
        let fm = FileManager.default
        if let p = ProcessInfo.processInfo.environment["COLOCATE_RAY_PYTHON"], !p.isEmpty { return p }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        for start in [URL(fileURLWithPath: fm.currentDirectoryPath), exe] {
            var dir = start
            for _ in 0..<6 {
                let candidate = dir.appendingPathComponent(".venv-ray/bin/python").path
                if fm.isExecutableFile(atPath: candidate) { return candidate }
                dir = dir.deletingLastPathComponent()
            }
        }
        return nil
    }
}

/// The Ray half of a `Cluster` made by `Cluster.ray`: placement groups become Ray placement groups,
/// workers are hosted by `colocate_ray.host.WorkerHost` actors and dial back over TCP authenticated
/// by the cluster secret. Ray does placement, lifetime and failure detection; calls never pass
/// through Ray.
final class RayBackend: Sendable {
    enum GroupState: Sendable, Equatable {
        case pending
        case created
        case failed(String)
        case removed
    }

    struct Group: Sendable {
        var name: String
        var rayName: String
        var bundles: [ResourceBundle]
        var state: GroupState = .pending
        /// Ray node id of each bundle, once created.
        var nodes: [String] = []
        /// The virtual CPU device of each bundle that has one, once created.
        var devices: [Device?] = []
    }

    private struct State: Sendable {
        var groups: [Int: Group] = [:]
        var nextGroup = 0
        var processes: [Int: WorkerProcess] = [:]
        /// Deaths reported before the spawn's reply was handled.
        var earlyDeaths: [Int: Termination] = [:]
    }

    let helper: RayHelper
    /// The address of this host that workers dial (Ray's IP of this node unless given).
    let advertisedHost: String
    let deviceKind: DeviceKind
    /// Devices of that kind the cluster offered when this driver joined.
    let deviceCount: Int
    let options: RayOptions
    /// The Ray address this cluster joined.
    let address: String
    private let state = Mutex(State())

    /// Starts the helper, joins the Ray cluster at `address` and opens the control plane.
    init(address: String, options: RayOptions) async throws {
        guard let python = options.python ?? RayOptions.defaultPython() else {
            throw ClusterError(.invalidArgument, "Ray mode is not installed: run `bash python/install-ray.sh` (makes .venv-ray/) or set COLOCATE_RAY_PYTHON to a Python with ray and colocate_ray")
        }
        let helper = try RayHelper(python: python)
        do {
            let reply: [String: Any]
            do {
                reply = try await helper.request("connect", ["address": address], timeout: options.connectTimeout)
            } catch let error as ClusterError where error.code == .timedOut {
                throw ClusterError(.timedOut, "no Ray cluster answered at '\(address)' within \(options.connectTimeout): is it started (`ray start --head`), and is the address its head's HOST:PORT?")
            }
            let resources = reply["resources"] as? [String: Any] ?? [:]
            let nodeIP = reply["node_ip"] as? String ?? "127.0.0.1"
            let kind = options.deviceKind ?? (resources["colocate_cpu_device"] != nil ? .cpu : .cuda)
            deviceKind = kind
            deviceCount = Int((resources[kind == .cpu ? "colocate_cpu_device" : "GPU"] as? Double) ?? 0)
            advertisedHost = options.advertisedHost ?? nodeIP
        } catch {
            helper.terminate()
            throw error
        }
        self.helper = helper
        self.options = options
        self.address = address
        helper.setEventHandler { [weak self] event in
            guard let self, event["event"] as? String == "died", let id = event["actor"] as? Int else { return }
            let termination = RayBackend.termination(event)
            let process = self.state.withLock { s -> WorkerProcess? in
                if let p = s.processes.removeValue(forKey: id) { return p }
                s.earlyDeaths[id] = termination
                return nil
            }
            process?.exit.succeed(termination)
        }
    }

    static func termination(_ event: [String: Any]) -> Termination {
        if let signal = event["signal"] as? Int { return .signaled(signal: Int32(signal)) }
        if let code = event["code"] as? Int {
            // A worker killed by its parent-death signal has the actor's death as its real cause.
            return .exited(code: Int32(code))
        }
        return .lost(reason: event["reason"] as? String ?? "its hosting Ray actor died")
    }

    // MARK: Placement groups

    /// Ray's resource dictionary for a bundle.
    func rayBundle(_ b: ResourceBundle) -> [String: Any] {
        var d: [String: Any] = ["CPU": b.cpu]
        if b.gpu > 0 { d[deviceKind == .cuda ? "GPU" : "colocate_cpu_device"] = b.gpu }
        return d
    }

    /// Registers a group and asks Ray for it in the background; `wait` sees the outcome.
    func createGroup(name given: String?, bundles: [ResourceBundle], strategy: PlacementStrategy, changes: ChangeSignal) throws(ClusterError) -> (Int, String) {
        let next = state.withLock { $0.nextGroup + 1 }
        let name = given ?? "pg-\(next)"
        guard !bundles.isEmpty else { throw ClusterError("placement group '\(name)' has no bundles; give at least one") }
        for (i, b) in bundles.enumerated() { try b.validate(index: i) }
        let (id, rayName) = state.withLock { s -> (Int, String) in
            s.nextGroup += 1
            let rayName = "colocate-\(getpid())-\(s.nextGroup)-\(name)"
            s.groups[s.nextGroup] = Group(name: name, rayName: rayName, bundles: bundles)
            return (s.nextGroup, rayName)
        }
        let request: [String: Any] = ["name": rayName, "bundles": bundles.map(rayBundle), "strategy": strategy.rawValue,
                                      "timeout": Double(options.placementTimeout.inMicroseconds) / 1e6]
        let helper = self.helper
        let kind = deviceKind
        Task { [weak self] in
            let outcome: GroupState
            var nodes: [String] = []
            var devices: [Device?] = Array(repeating: nil, count: bundles.count)
            do {
                let reply = try await helper.request("create_pg", request)
                nodes = reply["bundle_nodes"] as? [String] ?? []
                let ordinals = reply["cpu_ordinals"] as? [String: Int] ?? [:]
                let perNode = reply["cpu_devices_on_node"] as? [String: Int] ?? [:]
                if kind == .cpu {
                    for (key, ordinal) in ordinals {
                        guard let i = Int(key), nodes.indices.contains(i) else { continue }
                        devices[i] = RayBackend.virtualCPUDevice(node: nodes[i], ordinal: ordinal, perNode: perNode[nodes[i]] ?? 1)
                    }
                }
                outcome = .created
            } catch {
                outcome = .failed("placement group '\(name)' is infeasible: \(error)")
            }
            guard let self else { return }
            let removedMeanwhile = self.state.withLock { s -> Bool in
                guard var g = s.groups[id], g.state == .pending else { return true }
                g.state = outcome
                g.nodes = nodes
                g.devices = devices
                s.groups[id] = g
                return false
            }
            if removedMeanwhile, outcome == .created { _ = try? await helper.request("remove_pg", ["pg": rayName]) }
            changes.notifyAll()
        }
        return (id, name)
    }

    func group(_ id: Int) -> Group? { state.withLock { $0.groups[id] } }

    /// Marks the group removed and asks Ray to remove it (Ray kills what still runs in it).
    func removeGroup(_ id: Int) async {
        let g = state.withLock { s -> Group? in
            guard var g = s.groups[id], g.state != .removed else { return nil }
            let was = g
            g.state = .removed
            s.groups[id] = g
            return was
        }
        guard let g, g.state == .created else { return }
        _ = try? await helper.request("remove_pg", ["pg": g.rayName])
    }

    /// The virtual CPU device `ordinal` of Ray node `node`, as the hosting actor names it
    /// (`colocate_ray.host.virtual_cpu_device_uuid`): SHA-256 of the node and ordinal.
    static func virtualCPUDevice(node: String, ordinal: Int, perNode: Int) -> Device {
        let h = SHA256.hash(Array("colocate-ray-virtual-cpu-device/\(node)/\(ordinal)".utf8))
        return Device(kind: .cpu, ordinal: ordinal, uuid: Device.formatUUID(prefix: "CPU", bytes: Array(h.prefix(16))),
                      capacity: VirtualCPUDevices.physicalMemory / max(1, perNode) / (1 << 20) * (1 << 20))
    }

    // MARK: Workers

    struct Spawned: Sendable {
        var process: WorkerProcess
        var device: Device?
        var node: String
    }

    /// Creates the hosting actor of actor `id` and starts its worker; returns once the worker runs
    /// (it dials back on its own).
    func spawn(actorID id: Int, actorName: String, group: Int?, bundleIndex: Int?, share: DeviceShare,
               executable: String, arguments: [String], environment: [String: String], secret: ClusterSecret,
               timeout: Duration) async throws -> Spawned {
        var rayGroup: Any = NSNull()
        if let group {
            guard let g = self.group(group) else { throw ClusterError("placement group #\(group) is not of this cluster") }
            switch g.state {
            case .created: rayGroup = g.rayName
            case .removed: throw ClusterError("placement group '\(g.name)' was removed; actor '\(actorName)' cannot be placed in it")
            case .failed(let why): throw ClusterError(.infeasible, why)
            case .pending: throw ClusterError("placement group '\(g.name)' is not ready: wait for `ready()` before placing actor '\(actorName)'")
            }
            if let b = bundleIndex, !g.bundles.indices.contains(b) {
                throw ClusterError("bundle index \(b) is out of range for actor '\(actorName)'; placement group '\(g.name)' has bundles 0...\(g.bundles.count - 1)")
            }
            if let b = bundleIndex, share > .zero, g.bundles[b].gpu == 0 {
                throw ClusterError("bundle \(b) of placement group '\(g.name)' holds no GPU (\(g.bundles[b])); actor '\(actorName)' cannot ask for a device fraction there")
            }
        }
        var env = environment
        env[ClusterSecret.environmentKey] = secret.hex
        let spec: [String: Any] = ["executable": executable, "arguments": arguments, "env": env]
        let reply = try await helper.request("spawn", [
            "actor": id, "pg": rayGroup, "bundle": bundleIndex ?? -1, "fraction": share.fraction,
            "device_kind": deviceKind.rawValue, "spec": spec, "timeout": Double(timeout.inMicroseconds) / 1e6,
        ])
        guard let pid = reply["pid"] as? Int else { throw ClusterError(.protocolViolation, "the Ray helper did not report the worker's pid") }
        var device: Device?
        if let d = reply["device"] as? [String: Any] {
            device = try WireCodec.decode(Device.self, from: Array(try JSONSerialization.data(withJSONObject: d)), what: "the hosting actor's device")
        }
        let helper = self.helper
        let process = WorkerProcess.remote(pid: Int32(pid)) { _ in
            // Only SIGKILL is asked of a worker (stopping goes over the connection): end its host.
            Task { _ = try? await helper.request("kill", ["actor": id]) }
        }
        let early = state.withLock { s -> Termination? in
            if let t = s.earlyDeaths.removeValue(forKey: id) { return t }
            s.processes[id] = process
            return nil
        }
        if let early { process.exit.succeed(early) }
        return Spawned(process: process, device: device, node: reply["node_id"] as? String ?? "?")
    }

    /// Removes the remaining groups, ends the helper (Ray ends its actors) and the control plane.
    func shutdown() async {
        let groups = state.withLock { s in s.groups.keys.sorted() }
        for g in groups { await removeGroup(g) }
        await helper.shutdown()
    }
}

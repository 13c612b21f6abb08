import Cluster
import Colocation
import Compute
import Engine
import Foundation
import Models
import Training
import WeightSync

/// `colocate bench sync`: the full weight sync through the real system — trainers and engine ranks in
/// their own processes on colocated virtual devices — timed from "trainers start exporting" to "every
/// engine rank holds the new weights". The ceiling it is compared with is this machine's memcpy
/// bandwidth, measured in the same run.
public struct SyncBenchmark: Sendable {
    public var devices: String?
    public var tensorParallelSize: Int = 2
    /// The model directory (the CLI makes a preset's when none is given).
    public var model: String?
    public var engineDtype: String = "f32"
    public var iterations: Int = 5
    public var device: String = "cpu"

    public var method: String = "pull"

    /// When set, the actors run on the Ray cluster at this address (`--cluster ray:ADDRESS`).
    public var rayAddress: String?

    public init() {}

    public func run() async throws {
        guard device == "cpu" || device == "cuda" else { throw BenchmarkError("unknown device '\(device)' (use cpu or cuda)") }
        guard iterations >= 1 else { throw BenchmarkError("--iterations must be ≥ 1") }
        guard method == "pull" || method == "push" else { throw BenchmarkError("--method must be pull or push, not '\(method)'") }
        guard let dir = model else { throw BenchmarkError("bench sync needs a model directory") }
        let engineType = try BenchmarkError.dtype(engineDtype)
        let spec = try DeviceSpec(parsing: devices ?? (device == "cuda" ? "cuda" : "cpu:2"))
        let cluster = try await Cluster.make(rayAddress: rayAddress, devices: spec)
        var layoutCount: Int?
        if case .cpu(let count, _) = spec { layoutCount = count }
        let layoutDevices = cluster.layoutDevices(count: layoutCount)
        do {
            try await measure(cluster, layoutDevices, dir, engineType)
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }

    private func measure(_ cluster: Cluster, _ layoutDevices: [Device], _ dir: String, _ engineType: DType) async throws {
        let layout = try ColocatedLayout(devices: layoutDevices, tensorParallelSize: tensorParallelSize,
                                         trainerFraction: 0.4, workerFraction: 0.4)
        let pg = try cluster.placementGroup(layout.bundles, name: "bench-sync")
        try await pg.ready()
        var trainers: [ActorRef] = []
        for i in layout.trainers.indices {
            let t = try await cluster.spawn(actorType: TrainerActor.typeName, placement: layout.trainerPlacement(i, in: pg), name: "trainer-\(i)")
            _ = try await t.call(LoadModel(directory: dir))
            trainers.append(t)
        }
        var engines: [LLM] = []
        for e in layout.engines.indices {
            engines.append(try await LLM(cluster: cluster, model: dir, placements: layout.enginePlacements(e, in: pg),
                                         memoryUtilization: 0.4, dtype: engineType, name: "engine-\(e)"))
        }
        var times: [Double] = []
        var phases: [(notice: Double, update: Double, rank: Double)] = []
        var legs: [(there: Double, back: Double)] = []  // push calls: to the handler, and back from it
        var bytes = 0
        var first = 0.0
        for it in 0...iterations {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in trainers { group.addTask { _ = try await t.call(PerturbWeights(seed: UInt64(it), scale: 0.01)) } }
                try await group.waitForAll()
            }
            let start = ContinuousClock.now
            // The first sync sends full exports (layouts) or attaches the trainers to the engine ranks;
            // later ones send only notices, or only the push calls.
            let written: Int
            if method == "push" {
                if it == 0 {
                    var destinations: [WeightDestination] = []
                    for e in engines { destinations += try await e.collectiveRPC(ExportWeightDestination()).map(\.destination) }
                    for t in trainers { _ = try await t.call(AttachWeightDestinations(destinations: destinations)) }
                }
                // Each call's round trip, split on the machine-wide monotonic clock: the way to the
                // trainer's handler, the push, and the way back to this task.
                let calls = try await withThrowingTaskGroup(of: (reply: PushWeights.Reply, sent: UInt64, returned: UInt64).self) { group in
                    for t in trainers {
                        group.addTask {
                            let sent = monotonicNanoseconds()
                            let reply = try await t.call(PushWeights())
                            return (reply, sent, monotonicNanoseconds())
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                let replies = calls.map(\.reply)
                written = replies.reduce(0) { $0 + $1.bytes }
                if it > 0 {
                    phases.append((0, (ContinuousClock.now - start).inSeconds, replies.map(\.seconds).max() ?? 0))
                    for c in calls {
                        legs.append((Double(c.reply.startedAt &- c.sent) / 1e9, Double(c.returned &- c.reply.endedAt) / 1e9))
                    }
                }
            } else if it == 0 {
                var exports: [String: ExportedWeights] = [:]
                try await withThrowingTaskGroup(of: ExportWeights.Reply.self) { group in
                    for t in trainers { group.addTask { try await t.call(ExportWeights()) } }
                    for try await r in group { exports[r.deviceUUID] = r.exported }
                }
                written = try await Self.update(engines, UpdateWeightsFromHandles(exports: exports)).reduce(0) { $0 + $1.bytes }
            } else {
                var notices: [String: WeightSyncNotice] = [:]
                try await withThrowingTaskGroup(of: ExportWeightsNotice.Reply.self) { group in
                    for t in trainers { group.addTask { try await t.call(ExportWeightsNotice()) } }
                    for try await r in group { notices[r.deviceUUID] = r.notice }
                }
                let noticed = ContinuousClock.now
                let replies = try await Self.update(engines, UpdateWeightsFromNotices(notices: notices))
                written = replies.reduce(0) { $0 + $1.bytes }
                let end = ContinuousClock.now
                phases.append(((noticed - start).inSeconds, (end - noticed).inSeconds, replies.map(\.seconds).max() ?? 0))
            }
            let d = ContinuousClock.now - start
            if it == 0 { first = d.inSeconds }
            if it > 0 { times.append(d.inSeconds) }
            bytes = written
        }
        for e in engines {
            guard try await e.collectiveRPC(CompareWeights(exports: try await exportsOf(trainers))).allSatisfy(\.equal) else {
                throw BenchmarkError("after the sync an engine's weights differ from its trainers'")
            }
        }
        let median = times.sorted()[times.count / 2]
        // On CPU devices the sync is a host copy: compare it with this host's memcpy.
        let memcpy = device == "cpu" ? try Self.memcpyBandwidth() : nil
        let versus = memcpy.map { String(format: "; host memcpy %.2f GB/s (%.0f%%)", $0 / 1e9, Double(bytes) / median / $0 * 100) } ?? ""
        print("bench sync (\(device), \(method)): \(dir.split(separator: "/").last ?? ""), \(cluster.devices.count) devices, TP \(tensorParallelSize), engine \(engineDtype)")
        print(String(format: "median %.2f ms over %d warm runs; %@ written across %d ranks = %.2f GB/s%@; first sync %.2f ms",
                     median * 1e3, times.count, ByteCount.format(bytes), engines.count * tensorParallelSize,
                     Double(bytes) / median / 1e9, versus, first * 1e3))
        func medianOf(_ values: [Double]) -> String { String(format: "%.3f ms", values.sorted()[values.count / 2] * 1e3) }
        if method == "push" {
            print("  medians: trainers' push round trip \(medianOf(phases.map(\.update))), of which the slowest trainer's push \(medianOf(phases.map(\.rank)))")
            print("  medians per call: call → trainer's handler \(medianOf(legs.map(\.there))), handler's end → reply here \(medianOf(legs.map(\.back)))")
        } else {
            print("  medians of the phases: trainers' notices \(medianOf(phases.map(\.notice))), engines' update round trip "
                + "\(medianOf(phases.map(\.update))), of which the slowest rank's update \(medianOf(phases.map(\.rank)))")
        }
    }

    /// Sends `call` to every rank of every engine at once; every rank's reply.
    static func update<C: RemoteCall>(_ engines: [LLM], _ call: C) async throws -> [C.Reply] where C.Reply == UpdateWeightsFromHandles.Reply {
        try await withThrowingTaskGroup(of: [C.Reply].self) { group in
            for e in engines { group.addTask { try await e.collectiveRPC(call) } }
            return try await group.reduce(into: []) { $0 += $1 }
        }
    }

    private func exportsOf(_ trainers: [ActorRef]) async throws -> [String: ExportedWeights] {
        var out: [String: ExportedWeights] = [:]
        for t in trainers {
            let r = try await t.call(ExportWeights())
            out[r.deviceUUID] = r.exported
        }
        return out
    }

    /// Bytes per second of a 256 MiB memcpy between two warmed host buffers (median of 5).
    static func memcpyBandwidth() throws -> Double {
        let n = 256 << 20
        let a = try HostMemory.allocate(byteCount: n), b = try HostMemory.allocate(byteCount: n)
        memset(a.baseAddress, 1, n)
        memset(b.baseAddress, 2, n)
        var best: [Double] = []
        for _ in 0..<5 {
            let s = ContinuousClock.now
            memcpy(b.baseAddress, a.baseAddress, n)
            let d = ContinuousClock.now - s
            best.append(Double(n) / (d.inSeconds))
        }
        return best.sorted()[2]
    }
}

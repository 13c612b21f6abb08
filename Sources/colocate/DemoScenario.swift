import Cluster
import Colocation
import Compute
import Engine
import Foundation
import Models
import Training
import WeightSync

/// vLLM's `rlhf_colocate.py`, end to end: trainers and tensor-parallel engines share devices, the
/// trainers zero their weights and the engines load them in place through device-memory handles.
struct DemoScenario {
    struct Options {
        var devices: DeviceSpec
        var tensorParallelSize: Int
        var trainerFraction: Double
        var workerFraction: Double
        var memoryUtilization: Double
        var model: String
        var prompt: String
        var maxTokens: Int
        var engineDType: DType
        var workerExecutable: String?
        /// Trainers write into the engine ranks' weights (push) instead of the ranks reading them (pull, the seed's way).
        var push = false
        /// Run on the Ray cluster at this address instead of this host (`--cluster ray:ADDRESS`).
        var rayAddress: String? = nil
    }

    struct Step: Codable {
        var name: String
        var seconds: Double
        var detail: String
    }

    struct ActorDevice: Codable {
        var actor: String
        var bundle: Int
        var deviceUUID: String
        var share: Double
    }

    struct Generation: Codable {
        var engine: Int
        var tokenIds: [Int32]
        var text: String?
    }

    struct Report: Codable {
        var model: String
        var devices: [String]
        var tensorParallelSize: Int
        var actors: [ActorDevice] = []
        var steps: [Step] = []
        var before: [Generation] = []
        var after: [Generation] = []
        var syncedBytesPerRank: [Int] = []
        var passed = false
        var failure: String?
    }

    /// A failed check of the scenario: the demo exits non-zero with this reason.
    struct CheckFailed: Error, CustomStringConvertible {
        var description: String
    }

    let options: Options
    let log: (String) -> Void

    func run() async throws -> Report {
        var clusterOptions = ClusterOptions()
        if let exe = options.workerExecutable { clusterOptions.workerExecutable = exe }
        let cluster = try await Cluster.make(rayAddress: options.rayAddress, devices: options.devices, options: clusterOptions)
        let rec = Recorder(Report(model: options.model, devices: cluster.devices.map(\.uuid), tensorParallelSize: options.tensorParallelSize))
        do {
            try await scenario(cluster, rec)
            rec.report.passed = true
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
        return rec.report
    }

    /// The report being filled; a reference so step closures can add to it while a step is timed.
    final class Recorder { var report: Report; init(_ r: Report) { report = r } }

    private func timed<T>(_ name: String, _ rec: Recorder, _ body: () async throws -> (T, String)) async throws -> T {
        log("… \(name)")
        let start = ContinuousClock.now
        let (value, detail) = try await body()
        let d = ContinuousClock.now - start
        let seconds = d.inSeconds
        rec.report.steps.append(Step(name: name, seconds: seconds, detail: detail))
        log(String(format: "✓ %@ (%.3f s)%@", name, seconds, detail.isEmpty ? "" : "\n    " + detail.replacingOccurrences(of: "\n", with: "\n    ")))
        return value
    }

    private func scenario(_ cluster: Cluster, _ rec: Recorder) async throws {
        let layout = try ColocatedLayout(devices: cluster.layoutDevices(count: options.devices.deviceCount), tensorParallelSize: options.tensorParallelSize,
                                         trainerFraction: options.trainerFraction, workerFraction: options.workerFraction)
        log("layout (placement group of \(layout.devices.count) one-device bundles, PACK):\n" + layout.table())
        let pg = try cluster.placementGroup(layout.bundles, strategy: .pack, name: "colocate")
        try await pg.ready()
        if let nodes = pg.bundleNodes {
            log("Ray placed the bundles on nodes: " + nodes.enumerated().map { "\($0.offset): \($0.element.prefix(12))" }.joined(separator: ", "))
            rec.report.devices = pg.bundleDevices.map { $0?.uuid ?? "?" }
        }

        // 1. Trainers load the model onto their devices and zero every weight.
        let trainers: [ActorRef] = try await timed("1. \(layout.trainers.count) trainers load the model and zero every weight", rec) {
            let refs = try await withThrowingTaskGroup(of: (Int, ActorRef).self) { group in
                let model = options.model
                for i in layout.trainers.indices {
                    let placement = layout.trainerPlacement(i, in: pg), name = layout.trainers[i].name
                    group.addTask {
                        let ref = try await cluster.spawn(actorType: TrainerActor.typeName, placement: placement, name: name)
                        _ = try await ref.call(LoadModel(directory: model))
                        _ = try await ref.call(ZeroWeights())
                        return (i, ref)
                    }
                }
                var out = [ActorRef?](repeating: nil, count: layout.trainers.count)
                for try await (i, ref) in group { out[i] = ref }
                return out.map { $0! }
            }
            return (refs, "f32 master weights in one exportable buffer per trainer, \(options.trainerFraction) of each device")
        }

        // The engines: TP ranks on consecutive bundles, each with a share of its bundle's device.
        let engines: [LLM] = try await timed("   \(layout.engines.count) engines start (TP \(layout.tensorParallelSize), \(options.engineDType) weights, memory utilization \(options.memoryUtilization))", rec) {
            var engines: [LLM] = []
            for e in layout.engines.indices {
                engines.append(try await LLM(cluster: cluster, model: options.model, tensorParallelSize: layout.tensorParallelSize,
                                             placement: (pg, layout.bundleIndices(ofEngine: e)), workerFraction: options.workerFraction,
                                             memoryUtilization: options.memoryUtilization, dtype: options.engineDType, name: "engine-\(e)"))
            }
            var lines: [String] = []
            for (e, engine) in engines.enumerated() {
                let ranks = try await engine.describe()
                for r in ranks {
                    lines.append("engine \(e) rank \(r.rank): pid \(r.pid), \(ByteCount.format(r.weightBytes)) weights, KV cache \(r.kvCacheBlocks) blocks × \(r.blockSize) tokens, \(ByteCount.format(r.usedBytes)) of \(ByteCount.format(r.budgetBytes)) budget")
                }
                if let startup = try await engine.startupBreakdown(ranks: ranks) { lines.append("engine \(e) started in \(startup.summary)") }
            }
            return (engines, lines.joined(separator: "\n"))
        }

        // 2. Every actor reports its device; trainers and engine ranks on a bundle must share it.
        try await timed("2. trainers and engine ranks report device UUIDs; colocation checked", rec) {
            var lines: [String] = []
            let trainerUUIDs = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for (i, t) in trainers.enumerated() { group.addTask { (i, try await t.call(ReportDevice()).uuid ?? "none") } }
                var out = [String](repeating: "", count: trainers.count)
                for try await (i, uuid) in group { out[i] = uuid }
                return out
            }
            for (i, uuid) in trainerUUIDs.enumerated() {
                rec.report.actors.append(ActorDevice(actor: layout.trainers[i].name, bundle: i, deviceUUID: uuid, share: options.trainerFraction))
            }
            for (e, engine) in engines.enumerated() {
                let uuids = try await engine.collectiveRPC(ReportDeviceUUID())
                for (r, uuid) in uuids.enumerated() {
                    let bundle = layout.engines[e][r].bundleIndex
                    rec.report.actors.append(ActorDevice(actor: layout.engines[e][r].name, bundle: bundle, deviceUUID: uuid, share: options.workerFraction))
                    guard uuid == trainerUUIDs[bundle] else {
                        throw CheckFailed(description: "colocation check failed: engine \(e) rank \(r) is on \(uuid) but trainer \(bundle) is on \(trainerUUIDs[bundle])")
                    }
                    lines.append("bundle \(bundle): \(uuid) ← trainer-\(bundle) + engine-\(e) rank \(r)")
                }
            }
            return ((), lines.joined(separator: "\n"))
        }

        let params = SamplingParams(maxTokens: options.maxTokens, temperature: 0, seed: 0)
        func generateAll() async throws -> [Generation] {
            var out: [Generation] = []
            for (e, engine) in engines.enumerated() {
                let r = try await engine.generate([options.prompt], params)[0].outputs[0]
                out.append(Generation(engine: e, tokenIds: r.tokenIds, text: r.text))
            }
            return out
        }
        func show(_ g: [Generation]) -> String {
            g.map { "engine \($0.engine): \(String(reflecting: $0.text ?? "")) \($0.tokenIds.prefix(8).map(String.init).joined(separator: ","))…" }.joined(separator: "\n")
        }

        // 3. Generate before the sync.
        rec.report.before = try await timed("3. engines generate (before sync): \(String(reflecting: options.prompt))", rec) {
            let g = try await generateAll()
            return (g, show(g))
        }

        // 4. Pull (the seed's way): trainers export; each engine rank opens its own device's export and
        //    loads its shard. Push: each engine rank exports its weight buffer; each trainer attaches to
        //    the ranks on its device and writes their shards itself.
        let stepName = options.push
            ? "4. engine ranks export their weight buffers; each trainer writes the shards of the ranks on its own device"
            : "4. trainers export weights; each engine rank loads its shard from its own device's trainer"
        let exports: [String: ExportedWeights] = try await timed(stepName, rec) {
            var exports: [String: ExportedWeights] = [:]
            for t in trainers {
                let reply = try await t.call(ExportWeights())
                exports[reply.deviceUUID] = reply.exported
            }
            var lines: [String] = []
            if options.push {
                var destinations: [WeightDestination] = []
                for engine in engines { destinations += try await engine.collectiveRPC(ExportWeightDestination()).map(\.destination) }
                for (i, t) in trainers.enumerated() {
                    let attached = try await t.call(AttachWeightDestinations(destinations: destinations))
                    let pushed = try await t.call(PushWeights())
                    let perRank = pushed.bytes / max(attached.attached, 1)
                    for _ in 0..<attached.attached { rec.report.syncedBytesPerRank.append(perRank) }
                    lines.append(String(format: "trainer %d: %@ into %d engine rank(s) on %@ in %.1f ms", i, ByteCount.format(pushed.bytes),
                                        attached.attached, pushed.deviceUUID, pushed.seconds * 1e3))
                }
                return (exports, lines.joined(separator: "\n"))
            }
            for (e, engine) in engines.enumerated() {
                let replies = try await engine.collectiveRPC(UpdateWeightsFromHandles(exports: exports))
                for (r, reply) in replies.enumerated() {
                    rec.report.syncedBytesPerRank.append(reply.bytes)
                    lines.append(String(format: "engine %d rank %d: %@ in %.1f ms", e, r, ByteCount.format(reply.bytes), reply.seconds * 1e3))
                }
            }
            return (exports, lines.joined(separator: "\n"))
        }

        // 5. Every rank verifies its weights equal the trainer's (zeros); generation changes.
        rec.report.after = try await timed("5. every rank verifies its weights equal its trainer's; engines generate again", rec) {
            for (e, engine) in engines.enumerated() {
                for (r, check) in try await engine.collectiveRPC(CompareWeights(exports: exports)).enumerated() where !check.equal {
                    throw CheckFailed(description: "engine \(e) rank \(r) weights differ from its trainer's: \(check.mismatches.prefix(3).joined(separator: ", "))")
                }
            }
            let after = try await generateAll()
            for (b, a) in zip(rec.report.before, after) where b.tokenIds == a.tokenIds {
                throw CheckFailed(description: "engine \(a.engine) generated the same tokens after its weights were zeroed")
            }
            return (after, "all ranks equal to their trainers' zeroed weights\n" + show(after))
        }
        for engine in engines { await engine.shutdown() }
        await pg.remove()
    }
}

/// Where the demo keeps the model it makes when no `--model` is given.
enum ModelCache {
    static func directory(preset: String) -> String {
        let env = ProcessInfo.processInfo.environment
        let base = env["COLOCATE_CACHE"] ?? (env["XDG_CACHE_HOME"].map { $0 + "/colocate" } ?? NSHomeDirectory() + "/.cache/colocate")
        return base + "/models/\(preset)-seed0"
    }

    /// The preset's model directory, created on first use (atomically: a crash leaves no half model).
    static func ensure(preset: String, log: (String) -> Void) throws -> String {
        let dir = directory(preset: preset)
        let fm = FileManager.default
        if fm.fileExists(atPath: dir + "/model.safetensors") || fm.fileExists(atPath: dir + "/model.safetensors.index.json") { return dir }
        log("creating the \(preset) model (random weights, HF layout) in \(dir) — once")
        let tmp = dir + ".tmp-\(getpid())"
        defer { try? fm.removeItem(atPath: tmp) }
        try? fm.removeItem(atPath: tmp)
        try ModelDirectory.write(preset: ModelPreset.named(preset), to: tmp, seed: 0)
        try fm.createDirectory(atPath: (dir as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // rename(2) is atomic; if another first run got there first, its model is as good as ours.
        if rename(tmp, dir) != 0 && !fm.fileExists(atPath: dir + "/model.safetensors") {
            throw CLIError("cannot install the model in \(dir): \(String(cString: strerror(errno)))")
        }
        return dir
    }
}

extension DeviceSpec {
    /// The number of devices a `cpu:N` spec names (nil for `cuda`: on Ray, all the cluster offers).
    var deviceCount: Int? {
        if case .cpu(let count, _) = self { return count }
        return nil
    }
}

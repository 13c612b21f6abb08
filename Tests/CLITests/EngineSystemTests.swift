import Cluster
import Compute
import Engine
import Foundation
import Models
import Synchronization
import Testing
import Training
import WeightSync

/// The engine and the weight sync with real worker processes of the built binary on virtual CPU devices.
@Suite(.serialized) struct EngineSystemTests {
    /// A tiny model in HF layout, made once per preset for the whole run (suites run concurrently).
    static func model(_ preset: String) throws -> String {
        try madeModels.withLock { made in
            let dir = NSTemporaryDirectory() + "colocate-engine-tests-\(getpid())/\(preset)"
            if !made.contains(preset) {
                try ModelDirectory.write(preset: ModelPreset.named(preset), to: dir, seed: 5)
                made.insert(preset)
            }
            return dir
        }
    }
    static let madeModels = Mutex<Set<String>>([])

    /// Polls `condition` until it holds (true) or `limit` passes (false): a bound on waiting for what
    /// the OS does asynchronously (a process exiting), not a timing assertion.
    func waitUntil(within limit: Duration = .seconds(30), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    func cluster(devices: Int) throws -> Cluster {
        var options = ClusterOptions()
        options.workerExecutable = colocateBinary().path
        return try Cluster.local(devices: .cpu(count: devices, capacity: 1 << 30), options: options)
    }

    func group(_ cluster: Cluster) async throws -> PlacementGroup {
        let pg = try cluster.placementGroup(Array(repeating: ResourceBundle(gpu: 1), count: cluster.devices.count))
        try await pg.ready()
        return pg
    }

    @Test(arguments: ["opt-tiny", "llama-tiny"])
    func tensorParallelGenerationMatchesSingleProcess(preset: String) async throws {
        let dir = try Self.model(preset)
        let prompts: [[Int32]] = [[5, 9, 13, 40], [7, 8]]
        let params = SamplingParams(maxTokens: 10, temperature: 0.8, seed: 42, n: 2, ignoreEOS: true)
        let reference = try LocalModel(directory: dir, backend: CPUBackend()).generate(prompts: prompts, params: params)

        let c = try cluster(devices: 2)
        let pg = try await group(c)
        let tp1 = try await LLM(cluster: c, model: dir, tensorParallelSize: 1, placement: (pg, [0]), workerFraction: 0.4, name: "tp1")
        let tp2 = try await LLM(cluster: c, model: dir, tensorParallelSize: 2, placement: (pg, [0, 1]), workerFraction: 0.4, name: "tp2")
        let one = try await tp1.generate(promptTokenIds: prompts, params)
        let two = try await tp2.generate(promptTokenIds: prompts, params)
        await c.shutdown()

        // TP 1 in a worker is the single-process computation exactly.
        #expect(one.map { $0.outputs.map(\.tokenIds) } == reference.map { $0.map(\.tokenIds) })
        #expect(one.map { $0.outputs.map(\.logprobs) } == reference.map { $0.map(\.logprobs) })
        // TP 2 sums partial products in another order: same tokens, log-probs within float tolerance.
        #expect(two.map { $0.outputs.map(\.tokenIds) } == reference.map { $0.map(\.tokenIds) })
        for (a, b) in zip(two.flatMap { $0.outputs }, reference.flatMap { $0 }) {
            #expect(zip(a.logprobs, b.logprobs).allSatisfy { abs($0 - $1) < 1e-4 })
        }
    }

    /// Spawns a trainer on `bundle` holding `preset`, and an engine of `tp` ranks on `bundles`.
    func trainerAndEngine(_ c: Cluster, _ pg: PlacementGroup, trainerModel: String, trainerBundle: Int = 0,
                          engineModel: String, bundles: [Int], dtype: DType = .f32) async throws -> (ActorRef, LLM) {
        let trainer = try await c.spawn(actorType: TrainerActor.typeName,
                                        placement: ActorPlacement(group: pg, bundleIndex: trainerBundle, deviceFraction: 0.4), name: "trainer")
        _ = try await trainer.call(LoadModel(directory: trainerModel))
        let llm = try await LLM(cluster: c, model: engineModel, tensorParallelSize: bundles.count, placement: (pg, bundles),
                                workerFraction: 0.4, extension: [], dtype: dtype, name: "engine")
        return (trainer, llm)
    }

    @Test func bf16EngineTakesF32TrainersWeightsAndRefusesAnotherDevicesHandle() async throws {
        let dir = try Self.model("llama-tiny")
        let c = try cluster(devices: 2)
        let pg = try await group(c)
        let (trainer, llm) = try await trainerAndEngine(c, pg, trainerModel: dir, engineModel: dir, bundles: [0, 1], dtype: .bf16)
        let params = SamplingParams(maxTokens: 8, temperature: 0)
        let before = try await llm.generate(promptTokenIds: [[3, 4, 5]], params)
        let export = try await trainer.call(ExportWeights())
        let exports = [export.deviceUUID: export.exported]
        // Rank 1 sits on bundle 1, whose device has no trainer: it must say so.
        await #expect(throws: RemoteError.self) { try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: exports)) }
        // With the same export offered for both devices' UUIDs, rank 1 is refused by the importer's device check.
        let devices = try await llm.collectiveRPC(ReportDeviceUUID())
        do {
            _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: [devices[0]: export.exported, devices[1]: export.exported]))
            Issue.record("a handle for another device was accepted")
        } catch let error as RemoteError {
            #expect(error.message.contains("handle is for device \(devices[0])"), "\(error)")
        }
        #expect(try await llm.generate(promptTokenIds: [[3, 4, 5]], params) == before)

        // With a trainer on each device, the bf16 engine really takes the f32 trainers' weights: new
        // weights (noise on both trainers), pulled, are on every rank (converted) and change the output.
        let second = try await c.spawn(actorType: TrainerActor.typeName,
                                       placement: ActorPlacement(group: pg, bundleIndex: 1, deviceFraction: 0.4), name: "trainer-1")
        _ = try await second.call(LoadModel(directory: dir))
        for t in [trainer, second] { _ = try await t.call(PerturbWeights(seed: 11, scale: 0.5)) }
        var both: [String: ExportedWeights] = [:]
        for t in [trainer, second] {
            let e = try await t.call(ExportWeights())
            #expect(e.exported.layout.entries.allSatisfy { $0.dtype == .f32 })
            both[e.deviceUUID] = e.exported
        }
        _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: both))
        #expect(try await llm.describe().allSatisfy { $0.weightDType == .bf16 })
        #expect(try await llm.collectiveRPC(CompareWeights(exports: both)).allSatisfy(\.equal))
        #expect(try await llm.generate(promptTokenIds: [[3, 4, 5]], params) != before)
        await c.shutdown()
    }

    @Test func trainerMemoryCountsAgainstItsShare() async throws {
        let dir = try Self.model("llama-tiny")
        let bytes = ParameterTable(config: try ModelConfig.load(directory: dir)).totalCount * 4
        // Devices twice the f32 weights: a 0.4 trainer's share (0.8 × the weights) cannot hold them.
        var options = ClusterOptions()
        options.workerExecutable = colocateBinary().path
        let c = try Cluster.local(devices: .cpu(count: 1, capacity: 2 * bytes), options: options)
        let pg = try await group(c)
        let small = try await c.spawn(actorType: TrainerActor.typeName,
                                      placement: ActorPlacement(group: pg, bundleIndex: 0, deviceFraction: 0.4), name: "small")
        await #expect { try await small.call(LoadModel(directory: dir)) } throws: { error in
            "\(error)".contains("its share of") && "\(error)".contains("0.4 ×")
        }
        await small.stop()
        let whole = try await c.spawn(actorType: TrainerActor.typeName,
                                      placement: ActorPlacement(group: pg, bundleIndex: 0, deviceFraction: 0.6), name: "whole")
        #expect(try await whole.call(LoadModel(directory: dir)).bytes == bytes)
        // zero() clears this buffer kind: the exported memory reads back all zeros.
        func exportedBytesAreZero() async throws -> Bool {
            let exported = try await whole.call(ExportWeights()).exported
            let memory = try HostMemory.map(owning: try SharedMemoryIdentity(bytes: exported.handle.opaque).open(),
                                            byteCount: exported.handle.byteCount, device: .host)
            return UnsafeRawBufferPointer(start: memory.baseAddress, count: exported.handle.byteCount).allSatisfy { $0 == 0 }
        }
        #expect(try await exportedBytesAreZero() == false)
        _ = try await whole.call(ZeroWeights())
        #expect(try await exportedBytesAreZero())
        await c.shutdown()
    }



    @Test func syncOnTwoDevicesUpdatesEveryRankAndMismatchedUpdateChangesNothing() async throws {
        let llama = try Self.model("llama-tiny"), qwen = try Self.model("qwen2-tiny")
        let c = try cluster(devices: 2)
        let pg = try await group(c)
        let t0 = try await c.spawn(actorType: TrainerActor.typeName, placement: ActorPlacement(group: pg, bundleIndex: 0, deviceFraction: 0.4), name: "t0")
        let t1 = try await c.spawn(actorType: TrainerActor.typeName, placement: ActorPlacement(group: pg, bundleIndex: 1, deviceFraction: 0.4), name: "t1")
        _ = try await t0.call(LoadModel(directory: llama))
        _ = try await t1.call(LoadModel(directory: llama))
        let llm = try await LLM(cluster: c, model: llama, tensorParallelSize: 2, placement: (pg, [0, 1]), workerFraction: 0.4, dtype: .bf16, name: "e")
        let params = SamplingParams(maxTokens: 8, temperature: 0)
        let prompt: [[Int32]] = [[3, 4, 5]]
        let before = try await llm.generate(promptTokenIds: prompt, params)

        func exports() async throws -> [String: ExportedWeights] {
            var out: [String: ExportedWeights] = [:]
            for t in [t0, t1] {
                let e = try await t.call(ExportWeights())
                out[e.deviceUUID] = e.exported
            }
            return out
        }
        // Same weights: generation unchanged, every rank equal to its trainer (f32 → bf16 in the copy).
        var e = try await exports()
        _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: e))
        #expect(try await llm.collectiveRPC(CompareWeights(exports: e)).allSatisfy(\.equal))
        #expect(try await llm.generate(promptTokenIds: prompt, params) == before)

        // A trainer holding another architecture: refused before any byte is written, engine unchanged.
        _ = try await t1.call(LoadModel(directory: qwen))
        e = try await exports()
        do {
            _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: e))
            Issue.record("a mismatched update was accepted")
        } catch let error as RemoteError {
            #expect(error.message.contains("bias"), "the error names the tensor: \(error)")
        }
        #expect(try await llm.generate(promptTokenIds: prompt, params) == before)

        // Perturbed weights: every rank follows, and generation changes.
        _ = try await t1.call(LoadModel(directory: llama))
        _ = try await t0.call(PerturbWeights(seed: 1, scale: 0.5))
        _ = try await t1.call(PerturbWeights(seed: 1, scale: 0.5))
        e = try await exports()
        let replies = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: e))
        #expect(replies.allSatisfy { $0.bytes > 0 })
        #expect(try await llm.collectiveRPC(CompareWeights(exports: e)).allSatisfy(\.equal))
        #expect(try await llm.generate(promptTokenIds: prompt, params) != before)
        await c.shutdown()
    }

    /// Links in /proc/<pid>/fd and mappings in /proc/<pid>/maps naming the trainers' weight buffers.
    func weightBufferReferences(pid: Int32) -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        let links = fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
        let maps = (try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)) ?? ""
        return links.filter { $0.contains("colocate-weights") }.count
            + maps.split(separator: "\n").filter { $0.contains("colocate-weights") }.count
    }

    @Test func trainerKilledBeforeSyncIsAClearErrorAndLeavesNoSharedMemory() async throws {
        let dir = try Self.model("opt-tiny")
        let c = try cluster(devices: 1)
        let pg = try await group(c)
        let (trainer, llm) = try await trainerAndEngine(c, pg, trainerModel: dir, engineModel: dir, bundles: [0])
        let enginePID = try await llm.describe()[0].pid
        // A first sync maps the trainer's buffer in the engine.
        var export = try await trainer.call(ExportWeights())
        _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: [export.deviceUUID: export.exported]))
        let referencesOfOneBuffer = weightBufferReferences(pid: enginePID)
        #expect(referencesOfOneBuffer > 0)
        // The trainer reloads (a new buffer): after the next sync the engine holds only the new one.
        _ = try await trainer.call(LoadModel(directory: dir))
        export = try await trainer.call(ExportWeights())
        _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: [export.deviceUUID: export.exported]))
        #expect(weightBufferReferences(pid: enginePID) == referencesOfOneBuffer)
        // The trainer dies; the next sync fails with a reason and the engine lets go of the memory.
        export = try await trainer.call(ExportWeights())
        trainer.kill()
        // Wait for the event itself: the trainer's process gone (not a guess at how long that takes).
        #expect(await waitUntil { !export.exported.handle.ownerIsAlive })
        do {
            _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: [export.deviceUUID: export.exported]))
            Issue.record("a sync from a dead trainer succeeded")
        } catch let error as RemoteError {
            #expect(error.message.contains("gone") || error.message.contains("exited"), "\(error)")
        }
        #expect(weightBufferReferences(pid: enginePID) == 0)
        // The engine still serves.
        #expect(try await llm.generate(promptTokenIds: [[3, 4]], SamplingParams(maxTokens: 2, temperature: 0))[0].outputs[0].tokenIds.count == 2)
        await c.shutdown()
    }

    @Test func noticesSyncOnceTheLayoutIsKnown() async throws {
        let dir = try Self.model("opt-tiny")
        let c = try cluster(devices: 1)
        let pg = try await group(c)
        let (trainer, llm) = try await trainerAndEngine(c, pg, trainerModel: dir, engineModel: dir, bundles: [0])
        _ = try await trainer.call(PerturbWeights(seed: 3, scale: 0.1))
        let first = try await trainer.call(ExportWeightsNotice())
        // The engine has not seen the layout yet: a notice alone is refused, nothing written.
        await #expect(throws: RemoteError.self) {
            try await llm.collectiveRPC(UpdateWeightsFromNotices(notices: [first.deviceUUID: first.notice]))
        }
        let full = try await trainer.call(ExportWeights())
        _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: [full.deviceUUID: full.exported]))
        _ = try await trainer.call(PerturbWeights(seed: 4, scale: 0.1))
        let notice = try await trainer.call(ExportWeightsNotice())
        let replies = try await llm.collectiveRPC(UpdateWeightsFromNotices(notices: [notice.deviceUUID: notice.notice]))
        #expect(replies[0].version == full.exported.version + 1)
        let now = try await trainer.call(ExportWeights())
        #expect(try await llm.collectiveRPC(CompareWeights(exports: [now.deviceUUID: now.exported])).allSatisfy(\.equal))
        await c.shutdown()
    }

    /// A rank killed in the middle of a tensor-parallel step: the call fails (naming the dead rank)
    /// instead of leaving the driver and the surviving rank waiting for each other.
    @Test(.timeLimit(.minutes(2)))
    func aRankKilledMidGenerationFailsTheCallInsteadOfHanging() async throws {
        let dir = try Self.model("llama-tiny")
        let c = try cluster(devices: 2)
        let pg = try await group(c)
        let llm = try await LLM(cluster: c, model: dir, tensorParallelSize: 2, placement: (pg, [0, 1]), workerFraction: 0.4, name: "victim")
        let prompts = [[Int32]](repeating: [3, 4, 5], count: 32)
        let params = SamplingParams(maxTokens: 120, temperature: 0, ignoreEOS: true)
        let victim = llm.ranks.ranks[1]
        Task {
            try await Task.sleep(for: .milliseconds(150))
            victim.kill()
        }
        do {
            // Long enough that the kill lands during generation; repeat in case one call finishes first.
            for _ in 0..<50 { _ = try await llm.generate(promptTokenIds: prompts, params) }
            Issue.record("generation went on after a rank was killed")
        } catch {
            #expect(String(describing: error).contains("victim-rank1") || String(describing: error).contains("died"), "\(error)")
        }
        await c.shutdown()
    }

    @Test func budgetTooSmallFailsAtStartNamingWhatDidNotFit() async throws {
        let dir = try Self.model("opt-tiny")
        let c = try cluster(devices: 1)
        let pg = try await group(c)
        do {
            _ = try await LLM(cluster: c, model: dir, tensorParallelSize: 1, placement: (pg, [0]), workerFraction: 0.4,
                              memoryUtilization: 0.0001, name: "small")
            Issue.record("an engine started over its memory budget")
        } catch {
            #expect(String(describing: error).contains("weights needs"), "\(error)")
            #expect(String(describing: error).contains("memory utilization 0.0001"), "\(error)")
        }
        await c.shutdown()
    }

    struct WeightStats: RemoteCall {
        struct Reply: Codable, Sendable {
            var rank: Int
            var tensors: Int
            var absoluteSum: Double
        }
        static let name = "stats.weightStats"
    }

    @Test func workerExtensionsRunOnEveryRank() async throws {
        let dir = try Self.model("llama-tiny")
        let c = try cluster(devices: 2)
        let pg = try await group(c)
        let llm = try await LLM(cluster: c, model: dir, placements: [0, 1].map { ActorPlacement(group: pg, bundleIndex: $0, deviceFraction: 0.4) },
                                extensions: ["stats"], name: "ext")
        let stats = try await llm.collectiveRPC(WeightStats())
        #expect(stats.map(\.rank) == [0, 1])
        #expect(stats.allSatisfy { $0.tensors > 0 && $0.absoluteSum > 0 })
        await #expect(throws: (any Error).self) {
            _ = try await LLM(cluster: c, model: dir, placements: [ActorPlacement(group: pg, bundleIndex: 0, deviceFraction: 0.4)],
                              extensions: ["no-such-extension"], name: "bad")
        }
        await c.shutdown()
    }
}

import Cluster
import Compute
import Engine
import Foundation
import Models
import Testing
import Training
import WeightSync

/// Push sync with real worker processes on virtual CPU devices: trainers write into the engine ranks'
/// weights themselves (`ExportWeightDestination` → `AttachWeightDestinations` → `PushWeights`).
@Suite(.serialized) struct PushSyncSystemTests {
    let system = EngineSystemTests()

    /// Two trainers (one per device) and an engine of TP 2 over both, in `dtype`.
    func setUp(_ dtype: DType, model: String = "llama-tiny") async throws -> (Cluster, [ActorRef], LLM) {
        let dir = try EngineSystemTests.model(model)
        let c = try system.cluster(devices: 2)
        let pg = try await system.group(c)
        var trainers: [ActorRef] = []
        for i in 0..<2 {
            let t = try await c.spawn(actorType: TrainerActor.typeName,
                                      placement: ActorPlacement(group: pg, bundleIndex: i, deviceFraction: 0.4), name: "t\(i)")
            _ = try await t.call(LoadModel(directory: dir))
            trainers.append(t)
        }
        let llm = try await LLM(cluster: c, model: dir, tensorParallelSize: 2, placement: (pg, [0, 1]), workerFraction: 0.4, dtype: dtype, name: "e")
        return (c, trainers, llm)
    }

    func exports(_ trainers: [ActorRef]) async throws -> [String: ExportedWeights] {
        var out: [String: ExportedWeights] = [:]
        for t in trainers {
            let e = try await t.call(ExportWeights())
            out[e.deviceUUID] = e.exported
        }
        return out
    }

    @Test("A push waits for a generation on the rank (or fails naming it), and a generation for a push")
    func pushAndGenerationExcludeEachOther() async throws {
        let (c, trainers, llm) = try await setUp(.f32)
        let destinations = try await llm.collectiveRPC(ExportWeightDestination()).map(\.destination)
        for t in trainers { _ = try await t.call(AttachWeightDestinations(destinations: destinations)) }
        // Rank 0 looks busy: its gate held here as its generation would hold it.
        let gate = try WeightWriteGate(opening: try #require(destinations[0].gate))
        try gate.acquire(.generation, timeout: .seconds(5), what: "test")
        await #expect { try await trainers[0].call(PushWeights(waitSeconds: 0.05)) } throws: { error in
            "\(error)".contains("cannot push into engine rank 0: the engine rank is generating")
        }
        gate.release()
        _ = try await trainers[0].call(PushWeights())
        // A trainer mid-push on rank 0: a generation waits until it lets go.
        try gate.acquire(.push, timeout: .seconds(5), what: "test")
        let generation = Task {
            _ = try await llm.generate(promptTokenIds: [[3, 4, 5]], SamplingParams(maxTokens: 4, temperature: 0))
            return monotonicNanoseconds()
        }
        try await Task.sleep(for: .milliseconds(300))
        let released = monotonicNanoseconds()
        gate.release()
        #expect(try await generation.value > released)
        await c.shutdown()
    }

    @Test("A sync that did not finish leaves the rank refusing to generate until a complete one; every rank reports its weight version")
    func incompleteSyncRefusesGeneration() async throws {
        let (c, trainers, llm) = try await setUp(.f32)
        let prompt: [[Int32]] = [[3, 4, 5]]
        let params = SamplingParams(maxTokens: 4, temperature: 0)
        #expect(try await llm.weightVersions() == [0, 0])
        let destinations = try await llm.collectiveRPC(ExportWeightDestination()).map(\.destination)
        for t in trainers { _ = try await t.call(AttachWeightDestinations(destinations: destinations)) }
        for t in trainers { _ = try await t.call(PushWeights()) }
        #expect(try await llm.weightVersions() == [1, 1])

        // A writer began on rank 1 and never finished: what a trainer that dies mid-push leaves behind.
        let gate = try WeightWriteGate(opening: try #require(destinations[1].gate))
        try gate.acquire(.push, timeout: .seconds(5), what: "test")
        gate.beginWrite()
        gate.release()
        await #expect { _ = try await llm.generate(promptTokenIds: prompt, params) } throws: { error in
            "\(error)".contains("engine rank 1") && "\(error)".contains("incomplete weights")
        }
        #expect(try await llm.describe().map(\.weightsComplete) == [true, false])
        let torn = await #expect(throws: EngineError.self) { try await llm.weightVersions() }
        #expect(torn?.code == .incompleteWeights)

        // A complete sync makes it whole again; here a pull, which writes under the gate as a push does.
        _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: try await exports(trainers)))
        #expect(try await llm.weightVersions() == [2, 2])
        _ = try await llm.generate(promptTokenIds: prompt, params)
        await c.shutdown()
    }

    @Test("A pull waits for the gate as a push does")
    func pullTakesTheGate() async throws {
        let (c, trainers, llm) = try await setUp(.f32)
        let destinations = try await llm.collectiveRPC(ExportWeightDestination()).map(\.destination)
        let gate = try WeightWriteGate(opening: try #require(destinations[0].gate))
        // Rank 0 looks busy generating: its pull must wait until the gate is let go.
        try gate.acquire(.generation, timeout: .seconds(5), what: "test")
        let exported = try await exports(trainers)
        let pull = Task {
            _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: exported))
            return monotonicNanoseconds()
        }
        try await Task.sleep(for: .milliseconds(300))
        let released = monotonicNanoseconds()
        gate.release()
        #expect(try await pull.value > released)
        #expect(try await llm.weightVersions() == [1, 1])
        await c.shutdown()
    }

    @Test(arguments: [DType.f32, .bf16])
    func pushedWeightsEqualTheTrainersAndMatchAPull(dtype: DType) async throws {
        let (c, trainers, llm) = try await setUp(dtype)
        let prompt: [[Int32]] = [[3, 4, 5]]
        let params = SamplingParams(maxTokens: 8, temperature: 0)
        let before = try await llm.generate(promptTokenIds: prompt, params)

        let destinations = try await llm.collectiveRPC(ExportWeightDestination()).map(\.destination)
        #expect(destinations.map(\.rank) == [0, 1])
        for t in trainers {
            #expect(try await t.call(AttachWeightDestinations(destinations: destinations)).attached == 1)
        }
        for t in trainers { _ = try await t.call(PerturbWeights(seed: 3, scale: 0.5)) }
        var written = 0
        for t in trainers { written += try await t.call(PushWeights()).bytes }
        #expect(written > 0)
        // Every rank holds its shard of its trainer's weights (converted to the engine's dtype)…
        #expect(try await llm.collectiveRPC(CompareWeights(exports: try await exports(trainers))).allSatisfy(\.equal))
        let pushed = try await llm.generate(promptTokenIds: prompt, params)
        #expect(pushed != before)
        // …and generates exactly what a pull of the same weights gives.
        _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: try await exports(trainers)))
        #expect(try await llm.generate(promptTokenIds: prompt, params) == pushed)
        await c.shutdown()
    }

    @Test func wrongDeviceMissingAttachmentAndDeadEngineAreClearErrors() async throws {
        let (c, trainers, llm) = try await setUp(.f32)
        // Push before attaching.
        await #expect { try await trainers[0].call(PushWeights()) } throws: { error in
            "\(error)".contains("no engine ranks attached")
        }
        // Only the other device's rank offered: refused, naming the device.
        let destinations = try await llm.collectiveRPC(ExportWeightDestination()).map(\.destination)
        let other = destinations.filter { $0.rank == 1 }
        await #expect { try await trainers[0].call(AttachWeightDestinations(destinations: other)) } throws: { error in
            "\(error)".contains("none of the 1 engine ranks is on this trainer's device")
        }
        // A destination whose layout lies about a shard's shape: refused before anything is written.
        var forged = destinations[0]
        forged.exported.layout.entries[0].shape[0] += 1
        await #expect { try await trainers[0].call(AttachWeightDestinations(destinations: [forged])) } throws: { error in
            "\(error)".contains("its shard at TP 2 is")
        }
        // Attached, then the engine dies: the push fails naming the rank, it does not write into a corpse.
        _ = try await trainers[0].call(AttachWeightDestinations(destinations: destinations))
        _ = try await trainers[0].call(PushWeights())
        await llm.shutdown()
        #expect(await system.waitUntil { !destinations[0].exported.handle.ownerIsAlive })
        await #expect { try await trainers[0].call(PushWeights()) } throws: { error in
            "\(error)".contains("engine rank 0") && "\(error)".contains("is gone")
        }
        // The gone rank was detached (its mapping, which kept the dead engine's memory alive, released).
        await #expect { try await trainers[0].call(PushWeights()) } throws: { error in
            "\(error)".contains("no engine ranks attached")
        }
        await c.shutdown()
    }
}

import Cluster
import Compute
import Engine
import Foundation
import Models
import Testing
import Training
import WeightSync

/// Sleep and wake of an engine with real worker processes on virtual CPU devices: memory released and
/// restored, generation refused while asleep, and the Python stack's known failures (gibberish after a
/// level-2 wake; weights synced before waking) avoided in both orders.
@Suite(.serialized) struct SleepWakeSystemTests {
    let push = PushSyncSystemTests()
    let prompt: [[Int32]] = [[3, 4, 5, 6]]
    let greedy = SamplingParams(maxTokens: 8, temperature: 0)

    func attach(_ llm: LLM, _ trainers: [ActorRef]) async throws {
        let destinations = try await llm.collectiveRPC(ExportWeightDestination()).map(\.destination)
        for t in trainers { _ = try await t.call(AttachWeightDestinations(destinations: destinations)) }
    }

    @Test func levelOneReleasesTheCacheAndWakesToTheSameOutput() async throws {
        let (c, _, llm) = try await push.setUp(.f32)
        let before = try await llm.generate(promptTokenIds: prompt, greedy)
        let slept = try await llm.sleep(level: 1)
        #expect(slept.ranks.count == 2)
        #expect(slept.bytesReleased > 0, "the KV cache's touched pages are given back")
        await #expect { try await llm.generate(promptTokenIds: prompt, greedy) } throws: { error in
            "\(error)".contains("is asleep") && "\(error)".contains("wakeUp")
        }
        try await llm.wakeUp()
        #expect(try await llm.generate(promptTokenIds: prompt, greedy) == before)
        await c.shutdown()
    }

    @Test func levelTwoNeedsASyncAndAPushWhileAsleepLands() async throws {
        let (c, trainers, llm) = try await push.setUp(.f32)
        try await attach(llm, trainers)
        for t in trainers { _ = try await t.call(PerturbWeights(seed: 11, scale: 0.5)) }
        for t in trainers { _ = try await t.call(PushWeights()) }
        let pushed = try await llm.generate(promptTokenIds: prompt, greedy)

        // Order 1: sleep(2) → wake → generate is refused (no gibberish) → push → same output as before.
        let slept = try await llm.sleep(level: 2)
        #expect(slept.ranks.allSatisfy { $0.residentAfter < $0.residentBefore / 4 }, "weights and cache give their pages back: \(slept.ranks)")
        try await llm.wakeUp()
        await #expect { try await llm.generate(promptTokenIds: prompt, greedy) } throws: { error in
            "\(error)".contains("has no weights yet")
        }
        for t in trainers { _ = try await t.call(PushWeights()) }
        #expect(try await llm.generate(promptTokenIds: prompt, greedy) == pushed)

        // Order 2: sleep(2) → push while asleep → wake → the pushed weights generate.
        try await llm.sleep(level: 2)
        for t in trainers { _ = try await t.call(PushWeights()) }
        try await llm.wakeUp(tags: [.weights])
        await #expect { try await llm.generate(promptTokenIds: prompt, greedy) } throws: { error in
            "\(error)".contains("KV cache")
        }
        try await llm.wakeUp(tags: [.kvCache])
        #expect(try await llm.generate(promptTokenIds: prompt, greedy) == pushed)
        await c.shutdown()
    }

    @Test func aPullIntoSleepingWeightsIsRefusedAndAPullAfterWakeRestores() async throws {
        let (c, trainers, llm) = try await push.setUp(.f32)
        for t in trainers { _ = try await t.call(PerturbWeights(seed: 5, scale: 0.5)) }
        let exports = try await push.exports(trainers)
        _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: exports))
        let pulled = try await llm.generate(promptTokenIds: prompt, greedy)
        try await llm.sleep(level: 2)
        await #expect { try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: exports)) } throws: { error in
            "\(error)".contains("wake its weights")
        }
        try await llm.wakeUp()
        _ = try await llm.collectiveRPC(UpdateWeightsFromHandles(exports: exports))
        #expect(try await llm.generate(promptTokenIds: prompt, greedy) == pulled)
        await #expect { try await llm.sleep(level: 3) } throws: { error in "\(error)".contains("level must be 1 or 2") }
        await c.shutdown()
    }

    /// A refusal thrown on a rank reaches the driver with its code, not only its message: on the wire
    /// (`RemoteError.code(of:)`), and as the `EngineError` that `LLM` rethrows, at TP 1 and TP 2 alike.
    @Test func refusalsReachTheDriverWithTheirCodes() async throws {
        let system = EngineSystemTests()
        let c = try system.cluster(devices: 2)
        let pg = try await system.group(c)
        let dir = try EngineSystemTests.model("llama-tiny")
        let tp1 = try await LLM(cluster: c, model: dir, tensorParallelSize: 1, placement: (pg, [0]), workerFraction: 0.4, name: "tp1")
        let tp2 = try await LLM(cluster: c, model: dir, tensorParallelSize: 2, placement: (pg, [0, 1]), workerFraction: 0.4, name: "tp2")
        for llm in [tp1, tp2] {
            try await llm.sleep(level: 1)
            let refused = try await #require(throws: EngineError.self) { try await llm.generate(promptTokenIds: prompt, greedy) }
            #expect(refused.code == .asleep, "\(refused)")
            #expect(refused.message.contains("is asleep"))
        }
        // The frame itself: a rank called directly fails with a RemoteError carrying EngineError's code.
        let direct = try await #require(throws: RemoteError.self) {
            try await tp1.ranks.ranks[0].call(GenerateTokens(prompts: prompt, params: greedy))
        }
        #expect(direct.code(of: EngineError.self) == .asleep && direct.errorType == "Engine.EngineError", "\(direct)")
        #expect(direct.code(of: ClusterError.self) == nil, "a code is matched only with its own error type")
        #expect(EngineError(direct)?.code == .asleep)

        // Woken from level 2 with no sync since: another code, same path.
        try await tp1.wakeUp()
        try await tp1.sleep(level: 2)
        try await tp1.wakeUp()
        let empty = try await #require(throws: EngineError.self) { try await tp1.generate(promptTokenIds: prompt, greedy) }
        #expect(empty.code == .weightsNotLoaded, "\(empty)")
        // A bad request is not an engine refusal: it stays a RemoteError, without an engine code.
        try await tp2.wakeUp()
        let bad = try await #require(throws: RemoteError.self) { try await tp2.generate(promptTokenIds: [[-1]], greedy) }
        #expect(bad.code(of: EngineError.self) == nil && bad.message.contains("outside the vocabulary"), "\(bad)")
        await c.shutdown()
    }
}

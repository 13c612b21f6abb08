import Cluster
import Compute
import Foundation
import Models
import Synchronization
import Testing
@testable import RL

/// The GRPO loop end to end: real worker processes of the built binary on 4 virtual CPU devices, the
/// seed's layout (4 trainers at 0.4, 2 engines of TP 2 at 0.4).
@Suite(.serialized) struct RLSystemTests {
    static let base = NSTemporaryDirectory() + "colocate-rl-tests-\(getpid())"

    static func tinyModel() throws -> String {
        try made.withLock { done in
            let dir = base + "/qwen2-tiny"
            if !done {
                try ModelDirectory.write(preset: ModelPreset.named("qwen2-tiny"), to: dir, seed: 3)
                done = true
            }
            return dir
        }
    }
    static let made = Mutex(false)

    func options(_ name: String, steps: Int = 2) throws -> GRPOOptions {
        var o = GRPOOptions(model: try Self.tinyModel(), outputDirectory: Self.base + "/" + name)
        o.workerExecutable = colocateBinary().path
        o.devices = .cpu(count: 4, capacity: 1 << 30)
        o.steps = steps
        o.promptsPerStep = 4
        o.groupSize = 4
        o.maxTokens = 6
        o.learningRate = 1e-3
        o.evalPrompts = 8
        o.evalEvery = 1
        o.seed = 11
        return o
    }

    /// A reward with spread on an untrained model (exact match would be 0 everywhere: no gradient).
    static let lengthReward = Reward { _, completion in Double(completion.utf8.count % 3) / 2 }

    func metrics(_ o: GRPOOptions) throws -> [StepMetrics] { try MetricsLog.read(o.outputDirectory + "/" + GRPOLoop.Files.metrics) }

    func withoutTimes(_ records: [StepMetrics]) -> [[String]] {
        records.map { $0.fields.filter { !StepMetrics.timingKeys.contains($0.key) }.map { "\($0.key)=\($0.value)" } }
    }

    @Test func aRunWritesMetricsPlotSummaryAndCheckpointAndIsDeterministic() async throws {
        var o = try options("det-a")
        o.updatesPerBatch = 2  // ratio ≠ 1 on the second mini-batch
        o.klCoefficient = 0.05
        let summary = try await GRPOLoop(options: o, prompts: BuiltinTask(kind: .addition), reward: Self.lengthReward).run()
        let a = try metrics(o)
        #expect(a.map(\.step) == [0, 1, 2])
        #expect(a[0].evalAccuracy != nil && a[0].rewardMean == nil)
        for m in a.dropFirst() {
            #expect(m.fields.count == 23, "every key on an evaluating step: \(m.fields.map(\.key))")
            #expect(m.rewardMean!.isFinite && m.gradNorm! > 0 && m.entropy! > 0)
            #expect(m.kl! >= 0)
            #expect(m.tokensSampled! > 0 && m.completionLengthMax! <= 6)
        }
        #expect(a[2].kl! > 0)  // the policy moved away from the reference
        let dir = o.outputDirectory
        #expect(FileManager.default.fileExists(atPath: dir + "/reward.svg"))
        #expect(FileManager.default.fileExists(atPath: dir + "/summary.json"))
        #expect(FileManager.default.fileExists(atPath: dir + "/checkpoint/model.safetensors"))
        #expect(summary.steps == 2 && summary.evalAccuracyBefore != nil)

        var o2 = o
        o2.outputDirectory = Self.base + "/det-b"
        _ = try await GRPOLoop(options: o2, prompts: BuiltinTask(kind: .addition), reward: Self.lengthReward).run()
        #expect(withoutTimes(try metrics(o2)) == withoutTimes(a))
    }

    /// Engines asleep while the trainers work (KV cache, then weights too) learn exactly what awake
    /// engines do, and the memory each sleep gave back is in the metrics.
    @Test(arguments: [1, 2]) func sleepingEnginesGiveTheSameRunAndReportTheMemoryReleased(level: Int) async throws {
        let awake = try options("awake-\(level)")
        var asleep = try options("asleep-\(level)")
        asleep.sleepLevel = level
        for o in [awake, asleep] { _ = try await GRPOLoop(options: o, prompts: BuiltinTask(kind: .addition), reward: Self.lengthReward).run() }
        let slept = try metrics(asleep)
        for m in slept.dropFirst() { #expect((m.sleepBytesReleased ?? 0) > 0, "step \(m.step): \(m.sleepBytesReleased.map(String.init) ?? "no sleep_bytes_released")") }
        let withoutSleepBytes = slept.map { m -> StepMetrics in
            var m = m
            m.sleepBytesReleased = nil
            return m
        }
        #expect(withoutTimes(withoutSleepBytes) == withoutTimes(try metrics(awake)))
    }

    @Test func resumeContinuesTheMetricsStreamAsAnUninterruptedRunWould() async throws {
        let full = try options("full", steps: 3)
        _ = try await GRPOLoop(options: full, prompts: BuiltinTask(kind: .sorting), reward: Self.lengthReward).run()
        var first = try options("part", steps: 2)
        first.saveEvery = 1
        _ = try await GRPOLoop(options: first, prompts: BuiltinTask(kind: .sorting), reward: Self.lengthReward).run()
        var rest = try options("part", steps: 3)
        rest.resume = rest.outputDirectory
        _ = try await GRPOLoop(options: rest, prompts: BuiltinTask(kind: .sorting), reward: Self.lengthReward).run()
        #expect(try metrics(rest).map(\.step) == [0, 1, 2, 3])
        #expect(withoutTimes(try metrics(rest)) == withoutTimes(try metrics(full)))
    }

    struct Boom: Error, CustomStringConvertible { var description: String { "boom" } }

    @Test func aThrowingRewardIsOneLineAndTheLastCheckpointStays() async throws {
        var o = try options("reward-throws", steps: 3)
        o.saveEvery = 1
        let calls = Atomic<Int>(0)
        let reward = Reward { _, c in
            // 16 rollouts a step: the first throw is in step 2.
            if calls.add(1, ordering: .relaxed).newValue > 16 { throw Boom() }
            return Double(c.utf8.count % 2)
        }
        do {
            _ = try await GRPOLoop(options: o, prompts: BuiltinTask(kind: .addition), reward: reward).run()
            Issue.record("expected an error")
        } catch let e as RLError {
            #expect(e.description.hasPrefix("step 2: the reward function failed on prompt"), "\(e)")
            #expect(e.description.hasSuffix("boom") && !e.description.contains("\n"))
        }
        let state = try String(contentsOfFile: o.outputDirectory + "/checkpoint/trainer_state.json", encoding: .utf8)
        #expect(state.contains("\"dataPosition\" : 4"))  // step 1's checkpoint, intact
    }

    @Test(arguments: ["trainer", "engine"])
    func aRankKilledMidStepIsNamed(kind: String) async throws {
        var o = try options("killed-\(kind)", steps: 2)
        o.saveEvery = 1
        var loop = GRPOLoop(options: o, prompts: BuiltinTask(kind: .addition), reward: Self.lengthReward)
        loop.beforeTraining = { step, trainers, engines in
            guard step == 2 else { return }
            if kind == "trainer" { trainers[1].kill() } else { engines[1].ranks.ranks[0].kill() }
        }
        do {
            _ = try await loop.run()
            Issue.record("expected an error")
        } catch let e as RLError {
            #expect(e.description.hasPrefix("step 2: "), "\(e)")
            #expect(e.description.contains(kind == "trainer" ? "trainer-1" : "engine-1"), "\(e)")
            #expect(!e.description.contains("\n"))
        }
        #expect(FileManager.default.fileExists(atPath: o.outputDirectory + "/checkpoint/model.safetensors"))
    }
}

/// The README's recipe, small: a random model, SFT on the task's data that `colocate rl-data` writes,
/// then GRPO, all through the binary. The loop runs, writes its files, and the reward does not collapse.
@Suite struct RLRecipeTests {
    @Test func initTrainThenRL() throws {
        let dir = NSTemporaryDirectory() + "colocate-rl-recipe-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func run(_ args: [String]) throws -> String {
            let r = try runColocate(args)
            #expect(r.status == 0, "colocate \(args.joined(separator: " ")): \(r.stderr)")
            return r.stdout
        }
        _ = try run(["init-model", "--arch", "qwen2", "--preset", "qwen2-tiny", "--out", dir + "/init"])
        _ = try run(["rl-data", "--task", "reversal", "--rows", "4000", "--out", dir + "/sft.jsonl"])
        _ = try run(["train", "--model", dir + "/init", "--data", dir + "/sft.jsonl", "--out", dir + "/sft", "--steps", "150",
                     "--batch-size", "64", "--lr", "3e-3", "--shuffle", "--devices", "cpu:1", "--schedule", "cosine", "--warmup-steps", "20"])
        let out = try run(["rl", "--model", dir + "/sft", "--task", "reversal", "--out", dir + "/rl", "--steps", "4", "--eval-every", "2",
                           "--eval-prompts", "32", "--max-tokens", "6", "--lr", "3e-4", "--prompts-per-step", "8", "--group-size", "8", "--json"])
        let summary = try JSONDecoder().decode(RunSummary.self, from: Data(out.utf8))
        #expect(summary.steps == 4)
        let records = try MetricsLog.read(dir + "/rl/metrics.jsonl")
        #expect(records.map(\.step) == [0, 1, 2, 3, 4])
        #expect(records.compactMap(\.evalAccuracy).count == 3)
        let rewards = records.compactMap(\.rewardMean)
        #expect(rewards.count == 4 && rewards.allSatisfy(\.isFinite))
        // Not collapsed: still answering, and held-out accuracy not far below where SFT left it.
        #expect(records.last!.completionLengthMean! >= 1)
        #expect(summary.evalAccuracyAfter! >= summary.evalAccuracyBefore! - 0.25)
        #expect(FileManager.default.fileExists(atPath: dir + "/rl/reward.svg"))
        #expect(FileManager.default.fileExists(atPath: dir + "/rl/checkpoint/config.json"))
    }

    /// Precision flags fail in one line before anything starts: the CPU trains in f32 only.
    @Test func precisionFlagsAreOneLineErrors() throws {
        let base = ["rl", "--model", NSTemporaryDirectory() + "no-such-model", "--task", "addition", "--out", NSTemporaryDirectory() + "unused"]
        for (args, fragment) in [(["--trainer-dtype", "bf16-mixed"], "runs on GPUs"), (["--trainer-dtype", "f16"], "unknown trainer precision"),
                                 (["--engine-dtype", "i8"], "unknown dtype")] {
            let r = try runColocate(base + args)
            #expect(r.status != 0)
            let message = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(message.contains(fragment) && !message.contains("\n"), "\(args): \(message)")
        }
    }
}

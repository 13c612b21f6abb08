#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Testing
@testable import Cluster
@testable import RL

/// Data-parallel trainers on both nodes of the shared simulated Ray cluster: their CPU gradients cross
/// "hosts", so they all-reduce over the control plane (TCP between the nodes) instead of the driver's
/// shared-memory segment, and a run gives what the same layout gives on this host.
///
/// Exact equality, not a tolerance: both all-reduces add the ranks' gradients in rank order (rank 0's
/// sum `0 + g0 + g1 + …` and the segment's `g0 + g1 + …` are the same floats), and every other step of
/// a run is deterministic on one machine (`RLSystemTests` checks two local runs are identical).
extension RayClusterTests {
    /// A reward with spread on an untrained model (exact match would be 0 everywhere, so the policy
    /// gradient would vanish and the all-reduce would sum zeros).
    static let lengthReward = Reward { _, completion in Double(completion.utf8.count % 3) / 2 }

    static func grpoOptions(_ name: String, rayAddress: String?) throws -> GRPOOptions {
        var o = GRPOOptions(model: try model.get(), outputDirectory: NSTemporaryDirectory() + "colocate-ray-tests-\(getpid())/" + name)
        o.workerExecutable = try ColocateBinary.require()
        o.rayAddress = rayAddress
        o.devices = .cpu(count: 4, capacity: 1 << 30)
        o.steps = 2
        o.promptsPerStep = 4
        o.groupSize = 4
        o.maxTokens = 6
        o.learningRate = 1e-3
        o.klCoefficient = 0.05
        o.updatesPerBatch = 2
        o.evalPrompts = 4
        o.evalEvery = 1
        o.seed = 11
        return o
    }

    /// The metrics of a run without its timings.
    static func metrics(_ o: GRPOOptions) throws -> [[String]] {
        try MetricsLog.read(o.outputDirectory + "/" + GRPOLoop.Files.metrics).map {
            $0.fields.filter { !StepMetrics.timingKeys.contains($0.key) }.map { "\($0.key)=\($0.value)" }
        }
    }

    /// The seed's layout (4 trainers, 2 engines of TP 2) packed over the two nodes: trainers 0-1 and
    /// engine 0 on one, trainers 2-3 and engine 1 on the other.
    @Test func grpoWithTrainersOnBothNodesEqualsTheSameLayoutOnThisHost() async throws {
        let ray = try await RayTestCluster.shared()
        let lines = Mutex<[String]>([])
        let onRay = try Self.grpoOptions("grpo-ray", rayAddress: ray.address)
        _ = try await GRPOLoop(options: onRay, prompts: BuiltinTask(kind: .addition), reward: Self.lengthReward) { line in
            lines.withLock { $0.append(line) }
        }.run()
        let log = lines.withLock { $0 }
        #expect(log.contains("trainers: 4 on 2 host(s), gradients all-reduced by control-plane"), "\(log)")
        let local = try Self.grpoOptions("grpo-local", rayAddress: nil)
        _ = try await GRPOLoop(options: local, prompts: BuiltinTask(kind: .addition), reward: Self.lengthReward).run()

        let (a, b) = (try Self.metrics(onRay), try Self.metrics(local))
        #expect(a.count == 3)
        #expect(a == b)
        // The policy moved (a gradient was summed, not zeros) and both runs moved it alike.
        let records = try MetricsLog.read(onRay.outputDirectory + "/" + GRPOLoop.Files.metrics)
        #expect(records.dropFirst().allSatisfy { ($0.gradNorm ?? 0) > 0 && ($0.rewardStd ?? 0) > 0 })
        let weights = { (o: GRPOOptions) in try Data(contentsOf: URL(fileURLWithPath: o.outputDirectory + "/checkpoint/model.safetensors")) }
        #expect(try weights(onRay) == weights(local), "the checkpoints of the Ray and local runs differ")
        #expect(await eventually { rayHostedWorkerPIDs().isEmpty })
    }

    /// `colocate rl --cluster ray:ADDRESS` as a user runs it (exact-match reward, so only the KL term
    /// moves the policy here) writes the metrics the same command writes on this host.
    @Test func rlCommandOnRayWritesTheMetricsOfTheLocalRun() async throws {
        let ray = try await RayTestCluster.shared()
        let model = try Self.model.get()
        let base = NSTemporaryDirectory() + "colocate-ray-tests-\(getpid())/rl-cli-"
        let common = ["rl", "--model", model, "--task", "addition", "--steps", "2", "--prompts-per-step", "4", "--group-size", "4",
                      "--max-tokens", "6", "--eval-prompts", "4", "--seed", "11", "--lr", "1e-3", "--kl-coef", "0.05", "--devices", "cpu:4"]
        let r = try await runColocate(common + ["--out", base + "ray", "--cluster", "ray:\(ray.address)"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("gradients all-reduced by control-plane"), "\(r.output)")
        let l = try await runColocate(common + ["--out", base + "local"])
        #expect(l.status == 0, "\(l.output)")
        let read = { (dir: String) in
            try MetricsLog.read(dir + "/metrics.jsonl").map { $0.fields.filter { !StepMetrics.timingKeys.contains($0.key) }.map { "\($0.key)=\($0.value)" } }
        }
        let (a, b) = (try read(base + "ray"), try read(base + "local"))
        #expect(a.count == 3 && a == b)
        #expect(await eventually { rayHostedWorkerPIDs().isEmpty })
    }

    /// `colocate train --cluster ray:ADDRESS` gives the losses, gradient norms and checkpoint of the
    /// same command on this host: with 4 data-parallel trainers (PACK: two per node) over the control
    /// plane, with 2 (both on one node) through a segment their rank 0 made on that node.
    @Test(arguments: [4, 2])
    func trainCommandOnRayEqualsTheLocalRun(trainers: Int) async throws {
        let ray = try await RayTestCluster.shared()
        let model = try Self.model.get()
        let dir = NSTemporaryDirectory() + "colocate-ray-tests-\(getpid())/train-\(trainers)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let words = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran"]
        var rows = ""
        for i in 0..<16 {
            let text = (0..<12).map { words[($0 * 7 + i * 3 + $0 * i) % words.count] }.joined(separator: " ")
            rows += String(decoding: try JSONSerialization.data(withJSONObject: ["text": text]), as: UTF8.self) + "\n"
        }
        try rows.write(toFile: dir + "/rows.jsonl", atomically: true, encoding: .utf8)
        let common = ["train", "--model", model, "--data", dir + "/rows.jsonl", "--trainers", "\(trainers)", "--batch-size", "8", "--steps", "3",
                      "--lr", "1e-3", "--json"]
        let r = try await runColocate(common + ["--out", dir + "/ray", "--cluster", "ray:\(ray.address)"])
        #expect(r.status == 0, "\(r.output)")
        let expected = trainers == 4 ? "4 trainer(s) on 2 host(s), gradients all-reduced by control-plane"
                                     : "2 trainer(s) on 1 host(s), gradients all-reduced by shared-memory"
        #expect(r.output.contains(expected), "\(r.output)")
        let l = try await runColocate(common + ["--out", dir + "/local", "--devices", "cpu:\(trainers)"])
        #expect(l.status == 0, "\(l.output)")
        #expect(l.output.contains("gradients all-reduced by shared-memory"), "\(l.output)")
        func steps(_ output: String) throws -> [[Double]] {
            try output.split(separator: "\n").filter { $0.hasPrefix("{") }.map { line in
                let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                return [o["step"] as? Double ?? -1, o["loss"] as? Double ?? .nan, o["grad_norm"] as? Double ?? .nan]
            }
        }
        let (a, b) = (try steps(r.output), try steps(l.output))
        #expect(a.count == 3 && a == b, "Ray \(a) against local \(b)")
        let weights = { (name: String) in try Data(contentsOf: URL(fileURLWithPath: dir + "/\(name)/model.safetensors")) }
        #expect(try weights("ray") == weights("local"), "the checkpoints of the Ray and local runs differ")
        #expect(await eventually { rayHostedWorkerPIDs().isEmpty })
    }

    /// `ray.kill` of a trainer's hosting actor in the middle of a GRPO run on Ray: the run stops at
    /// that step with a one-line error naming the trainer, its peers waiting in the control-plane
    /// all-reduce are released (the driver aborts it), and no worker outlives the run.
    @Test(.timeLimit(.minutes(5)))
    func killedTrainerHostStopsTheRayGRPORunNamingItAndLeavesNoOrphan() async throws {
        let ray = try await RayTestCluster.shared()
        var o = try Self.grpoOptions("grpo-kill", rayAddress: ray.address)
        o.steps = 3
        // The trainers' next call after the kill is then the policy step, with its all-reduce.
        o.updatesPerBatch = 1
        o.klCoefficient = 0
        let loop = GRPOLoop(options: o, prompts: BuiltinTask(kind: .addition), reward: Self.lengthReward)
        loop.beforeTraining = { step, trainers, _ in
            if step == 2 { trainers[3].kill() }   // ray.kill of the hosting actor of trainer-3 (the other node)
        }
        do {
            _ = try await loop.run()
            Issue.record("a run whose trainer was killed finished")
        } catch let error as RLError {
            let message = "\(error)"
            print("a killed trainer host stopped the Ray GRPO run: \(message)")
            #expect(message.contains("step 2") && message.contains("trainer-3"), "\(message)")
            #expect(!message.contains("\n"), "\(message)")
        }
        #expect(await eventually(within: .seconds(60)) { rayHostedWorkerPIDs().isEmpty }, "workers outlived the run: \(rayHostedWorkerPIDs())")
    }
}

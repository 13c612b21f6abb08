import ArgumentParser
import Cluster
import Compute
import Foundation
import Models
import RL

/// `colocate bench rl`: one GRPO step at opt-125m shapes (P = 32 prompts of 64 tokens, G = 8, up to 128
/// new tokens), timed by phase, after one warm-up step — beside `shared/bench/anchor_grpo.py 32 8`.
struct BenchRL: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rl", abstract: "One GRPO step at opt-125m shapes, timed by phase (generate, reward, log-probs, train, sync, sleep, wake).")

    @Option(help: "Device kind: cpu or cuda.")
    var device: String = "cuda"
    @Option(help: "Devices: cpu:N or cuda (default: cuda with --device cuda, cpu:1 otherwise).")
    var devices: String?
    @Option(help: "Model preset (made once in the cache) or --model.")
    var preset: String = "opt-125m"
    @Option(help: "Model directory (instead of a preset).")
    var model: String?
    @Option(name: .customLong("tp"), help: "Tensor-parallel size of each engine.")
    var tensorParallelSize: Int = 1
    @Option(help: "Prompts per step (P).")
    var prompts: Int = 32
    @Option(help: "Completions per prompt (G).")
    var groupSize: Int = 8
    @Option(help: "Prompt length in tokens.")
    var promptTokens: Int = 64
    @Option(help: "New tokens at most.")
    var maxTokens: Int = 128
    @Option(help: "Sequences per trainer micro-batch.")
    var microBatch: Int = 64
    @Option(help: "Engine sleep level while training (0, 1, 2).")
    var sleepLevel: Int = 0
    @Option(help: "Engine weight dtype: f32, bf16, f16 or auto (bf16 on cuda, f32 on cpu).")
    var engineDtype: String?
    @Option(help: "Trainer precision: f32, bf16-mixed or auto (bf16-mixed on cuda, as the anchor's autocast; f32 on cpu).")
    var trainerDtype: String?
    @Flag(help: "Print the timed step's metrics as JSON.")
    var json = false

    func run() async throws {
        let dir = try model ?? ModelCache.ensure(preset: preset) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        let tokenizer = try Tokenizer(path: dir + "/tokenizer.json")
        let out = NSTemporaryDirectory() + "colocate-bench-rl-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: out) }
        var o = GRPOOptions(model: dir, outputDirectory: out)
        do { o.devices = try DeviceSpec(parsing: devices ?? (device == "cuda" ? "cuda" : "cpu:1")) } catch { throw CLIError("\(error)") }
        o.tensorParallelSize = tensorParallelSize
        o.trainerFraction = 0.4
        o.workerFraction = 0.4
        o.memoryUtilization = 0.4
        o.engineDType = try CLIParse.engineDType(engineDtype, device: device)
        o.mixedPrecision = try CLIParse.mixedPrecision(trainerDtype, device: device)
        o.steps = 2
        o.promptsPerStep = prompts
        o.groupSize = groupSize
        o.maxTokens = maxTokens
        o.microBatchSequences = microBatch
        o.sleepLevel = sleepLevel
        o.evalPrompts = 0
        o.learningRate = 1e-6
        // A reward with spread, so advantages are not all zero and the update does real work.
        let reward = Reward { _, completion in Double(completion.utf8.count % 7) / 6 }
        let loop = GRPOLoop(options: o, prompts: RandomTextPrompts(tokenizer: tokenizer, tokens: promptTokens), reward: reward) {
            FileHandle.standardError.write(Data(($0 + "\n").utf8))
        }
        do { _ = try await loop.run() } catch { throw CLIError("\(error)") }
        let records = try MetricsLog.read(out + "/" + GRPOLoop.Files.metrics)
        guard let timed = records.last(where: { $0.step == 2 }) else { throw CLIError("the timed step left no metrics") }
        if json {
            print(timed.jsonLine())
            return
        }
        let phases = timed.fields.filter { $0.key.hasPrefix("time_") }
        let total = phases.reduce(0) { $0 + $1.value }
        print("GRPO step at \(model ?? (preset + " shapes")): P=\(prompts) G=\(groupSize), prompts ≈\(promptTokens) tokens, ≤\(maxTokens) new, engine \(o.engineDType), trainers \(o.mixedPrecision ? "bf16-mixed" : "f32") (step 2, after a warm-up step)")
        func row(_ name: String, _ seconds: Double) -> String {
            "  " + name.padding(toLength: 10, withPad: " ", startingAt: 0) + String(format: "%9.1f ms", seconds * 1e3)
        }
        for (k, v) in phases { print(row(String(k.dropFirst(5)), v)) }
        print(row("total", total))
        print(String(format: "  %d tokens sampled, %.0f tokens/s generating; mean completion %.1f tokens", timed.tokensSampled ?? 0,
                     timed.tokensPerSecond ?? 0, timed.completionLengthMean ?? 0))
    }
}

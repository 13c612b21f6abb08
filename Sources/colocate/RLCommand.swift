import ArgumentParser
import Cluster
import Compute
import Foundation
import Models
import RL

/// `colocate rl`: GRPO on colocated engines and trainers (the seed's layout by default, on 4 virtual
/// CPU devices), with a built-in verifiable task or a JSONL dataset.
struct RLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rl",
        abstract: "GRPO: engines generate, rewards score, data-parallel trainers update, weights are pushed into the engines in place.")

    @Option(help: "Model directory (Hugging Face layout): the policy to train and the KL term's reference.")
    var model: String
    @Option(help: "Built-in task: addition, reversal or sorting.")
    var task: String?
    @Option(help: "Operand size of the built-in task (digits per addend; string length - 1 for reversal, - 2 for sorting).")
    var digits: Int = 2
    @Option(help: "Dataset: JSON lines {\"prompt\", \"answer\"} (every 10th row is held out unless --eval-data).")
    var data: String?
    @Option(help: "Held-out prompts: JSON lines {\"prompt\", \"answer\"}.")
    var evalData: String?
    @Option(help: "Output directory: metrics.jsonl, reward.svg, summary.json, checkpoint/.")
    var out: String
    @Option(help: "Device kind: cpu (virtual CPU devices) or cuda.")
    var device: String = "cpu"
    @OptionGroup var layout: LayoutOptions
    @Option(help: "Data-parallel trainers (default: one per device).")
    var trainers: Int?
    @Option(help: "Share of its device's memory each engine rank may use (gpu_memory_utilization).")
    var memoryUtilization: Double = 0.4
    @Option(help: "Engine weight dtype: f32, bf16, f16 or auto (bf16 on cuda, f32 on cpu).")
    var engineDtype: String?
    @Option(help: "Trainer precision: f32, bf16-mixed (GPUs: f32 master weights, bf16 matmuls) or auto (bf16-mixed on cuda, f32 on cpu).")
    var trainerDtype: String?
    @Option(help: "RL steps (a resumed run continues up to this step).")
    var steps: Int = 20
    @Option(help: "Prompts per step (P).")
    var promptsPerStep: Int = 8
    @Option(help: "Completions per prompt (G).")
    var groupSize: Int = 8
    @Option(help: "New tokens per completion at most.")
    var maxTokens: Int = 16
    @Option(help: "Sampling temperature.")
    var temperature: Float = 1.0
    @Option(help: "Nucleus sampling (1 = off).")
    var topP: Float = 1.0
    @Option(help: "Stop string: completions are cut before it (repeatable).")
    var stop: [String] = []
    @Option(help: "Learning rate (AdamW, constant).")
    var lr: Float = 1e-5
    @Option(help: "Optimizer updates of linear learning-rate warmup.")
    var warmupSteps: Int = 0
    @Option(help: "AdamW weight decay.")
    var weightDecay: Float = 0
    @Option(help: "Clip the global gradient norm to this (0: no clipping).")
    var maxGradNorm: Float = 1.0
    @Option(help: "KL coefficient β (k3 estimator against the frozen initial model; 0: no reference model).")
    var klCoef: Float = 0
    @Option(help: "PPO clip ε below 1.")
    var clipEpsLow: Float = 0.2
    @Option(help: "PPO clip ε above 1.")
    var clipEpsHigh: Float = 0.2
    @Option(help: "Loss aggregation: token-mean, seq-mean-token-mean or seq-mean-token-sum-norm (Dr. GRPO).")
    var lossAgg: String = "token-mean"
    @Option(help: "Advantage scaling: group ((r - mean) / (std + 1e-4)) or none (Dr. GRPO: r - mean).")
    var scaleRewards: String = "group"
    @Option(help: "Mini-batch updates per rollout batch (K).")
    var updatesPerBatch: Int = 1
    @Option(help: "Truncated importance sampling of engine/trainer mismatch, with this cap (e.g. 3; default off).")
    var importanceCap: Float?
    @Option(help: "Sequences per trainer micro-batch.")
    var microBatch: Int = 16
    @Option(help: "Engine sleep while training: 0 (none), 1 (release the KV cache), 2 (and the weights).")
    var sleepLevel: Int = 0
    @Option(help: "Evaluate on held-out prompts every K steps (and at step 0 and the end; 0: only then).")
    var evalEvery: Int = 5
    @Option(help: "Held-out prompts per evaluation.")
    var evalPrompts: Int = 64
    @Option(help: "Checkpoint every K steps (and at the end; 0: only at the end).")
    var saveEvery: Int = 0
    @Option(help: "Seed: prompts, sampling.")
    var seed: UInt64 = 0
    @Option(help: "Continue the run in this output directory (its checkpoint/ and metrics.jsonl).")
    var resume: String?
    @Flag(help: "Print the summary as JSON.")
    var json = false
    @Option(help: ClusterChoice.help)
    var cluster: String = "local"

    func run() async throws {
        guard device == "cpu" || device == "cuda" else { throw CLIError("unknown device '\(device)' (use cpu or cuda)") }
        let source: any PromptSource
        switch (task, data) {
        case (let t?, nil):
            guard evalData == nil else { throw CLIError("--eval-data goes with --data (a built-in task makes its own held-out set)") }
            source = try BuiltinTask(named: t, digits: digits)
        case (nil, let d?): source = try JSONLDataset(path: d, evalPath: evalData, chat: try chatPromptRenderer(model: model))
        case (nil, nil): throw CLIError("give a task (--task addition|reversal|sorting) or a dataset (--data FILE.jsonl)")
        default: throw CLIError("give either --task or --data, not both")
        }
        var o = GRPOOptions(model: model, outputDirectory: out)
        o.rayAddress = try ClusterChoice(parsing: cluster).rayAddress
        do {
            o.devices = try DeviceSpec(parsing: layout.devices ?? (device == "cuda" ? "cuda" : "cpu:4"))
        } catch { throw CLIError("\(error)") }
        o.trainers = trainers
        o.tensorParallelSize = layout.tensorParallelSize
        o.trainerFraction = layout.trainerFraction
        o.workerFraction = layout.workerFraction
        o.memoryUtilization = memoryUtilization
        o.engineDType = try CLIParse.engineDType(engineDtype, device: device)
        o.mixedPrecision = try CLIParse.mixedPrecision(trainerDtype, device: device)
        o.steps = steps
        o.promptsPerStep = promptsPerStep
        o.groupSize = groupSize
        o.maxTokens = maxTokens
        o.temperature = temperature
        o.topP = topP
        o.stop = stop
        o.learningRate = lr
        o.weightDecay = weightDecay
        o.warmupSteps = warmupSteps
        o.maxGradNorm = maxGradNorm > 0 ? maxGradNorm : nil
        o.klCoefficient = klCoef
        o.clipLow = clipEpsLow
        o.clipHigh = clipEpsHigh
        guard let agg = LossAggregation(rawValue: lossAgg) else {
            throw CLIError("unknown --loss-agg '\(lossAgg)' (use \(LossAggregation.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        o.lossAggregation = agg
        guard let scaling = RewardScaling(rawValue: scaleRewards) else { throw CLIError("unknown --scale-rewards '\(scaleRewards)' (use group or none)") }
        o.rewardScaling = scaling
        o.updatesPerBatch = updatesPerBatch
        o.importanceCap = importanceCap
        o.microBatchSequences = microBatch
        o.sleepLevel = sleepLevel
        o.evalEvery = evalEvery
        o.evalPrompts = evalPrompts
        o.saveEvery = saveEvery
        o.seed = seed
        o.resume = resume
        let loop = GRPOLoop(options: o, prompts: source, reward: .exactMatch) { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        let summary: RunSummary
        do {
            summary = try await loop.run()
        } catch {
            throw CLIError("\(error)")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(summary), as: UTF8.self))
        } else {
            print(summary.table())
        }
    }
}

/// `colocate rl-data`: a built-in task's prompts with their answers as JSON lines, for SFT with
/// `colocate train` (rows {"prompt", "completion"}) and for `colocate rl --data` (rows {"prompt", "answer"}).
struct RLData: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rl-data",
        abstract: "Write a built-in task's examples as JSON lines {\"prompt\", \"completion\", \"answer\"} (SFT data for colocate train).")

    @Option(help: "Task: addition, reversal or sorting.")
    var task: String
    @Option(help: "Operand size (as colocate rl --digits).")
    var digits: Int = 2
    @Option(help: "Rows to write.")
    var rows: Int = 1000
    @Option(help: "train (the training stream, never a held-out prompt) or eval (the held-out prompts).")
    var split: String = "train"
    @Option(help: "Seed of the training stream (use another seed than colocate rl's to keep SFT and RL prompts apart).")
    var seed: UInt64 = 1
    @Option(help: "Output file (.jsonl).")
    var out: String

    func run() async throws {
        let task = try BuiltinTask(named: self.task, digits: digits)
        guard rows >= 1 else { throw CLIError("--rows must be ≥ 1, got \(rows)") }
        let examples: [RLExample]
        switch split {
        case "train": examples = (0..<rows).map { task.trainExample(at: $0, seed: seed) }
        case "eval": examples = task.evalExamples(count: rows)
        default: throw CLIError("--split must be train or eval, got '\(split)'")
        }
        var text = ""
        for e in examples {
            let row = ["prompt": e.prompt, "completion": e.answer, "answer": e.answer]
            let data = try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys])
            text += String(decoding: data, as: UTF8.self) + "\n"
        }
        do { try text.write(toFile: out, atomically: true, encoding: .utf8) } catch {
            throw CLIError("cannot write \(out): \(error.localizedDescription)")
        }
        print("wrote \(examples.count) \(split) rows of \(task.name) to \(out)")
    }
}

/// `{"messages"}` rows become prompts through the model's chat template, with the generation
/// prompt; nil when the model has none (such rows are then refused, naming the line).
func chatPromptRenderer(model: String) throws -> JSONLDataset.ChatRenderer? {
    let files = try ChatTemplate.load(modelDirectory: model)
    guard !files.templates.isEmpty else { return nil }
    let template = try files.template()
    return { turns in
        try template.render(messages: turns.map { .object([("role", .string($0.role)), ("content", .string($0.content))]) },
                            addGenerationPrompt: true, bosToken: files.bosToken, eosToken: files.eosToken)
    }
}

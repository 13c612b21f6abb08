import ArgumentParser
import Cluster
import Compute
import Foundation
import Models
import Training

/// `colocate train`: supervised training (next-token cross-entropy) of a Hugging Face model directory
/// by a data-parallel group of trainer actors, writing an HF checkpoint with its optimizer state.
struct Train: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model on token data (cross-entropy, AdamW), data-parallel over trainer actors; writes an HF checkpoint.")

    @Option(help: "Model directory (Hugging Face layout).")
    var model: String
    @Option(help: "Training data: .safetensors with int64 input_ids [N,T] (and optional loss_mask), or .jsonl rows {\"text\"} / {\"prompt\",\"completion\"}.")
    var data: String
    @Option(help: "Checkpoint directory written at the end (and every --save-every steps).")
    var out: String
    @Option(help: "Device kind: cpu or cuda.")
    var device: String = "cpu"
    @Option(help: "Devices to place trainers on: cpu:N[:capacity] virtual CPU devices, or cuda (default: one per trainer).")
    var devices: String?
    @Option(help: "Data-parallel trainers, one per device.")
    var trainers: Int = 1
    @Option(help: "Total optimizer steps of the run (a resumed run continues up to this step).")
    var steps: Int = 1
    @Option(help: "Rows per optimizer step (the global batch, split over trainers and --grad-accum micro-batches).")
    var batchSize: Int = 8
    @Option(help: "Peak learning rate.")
    var lr: Float = 3e-4
    @Option(help: "AdamW betas, as beta1,beta2.")
    var betas: String = "0.9,0.95"
    @Option(help: "AdamW epsilon.")
    var eps: Float = 1e-8
    @Option(help: "AdamW weight decay (applied to parameters of >= 2 dimensions only).")
    var weightDecay: Float = 0.0
    @Option(help: "Clip the global gradient norm to this (0: no clipping).")
    var maxGradNorm: Float = 1.0
    @Option(help: "Learning-rate schedule: constant or cosine (linear warmup, then cosine to 0 at --steps).")
    var schedule: String = "constant"
    @Option(help: "Linear warmup steps.")
    var warmupSteps: Int = 0
    @Option(help: "Micro-batches per optimizer step (gradient accumulation).")
    var gradAccum: Int = 1
    @Option(help: "Precision: f32, or bf16-mixed (GPU: f32 master weights, bf16 matmuls).")
    var dtype: String = "f32"
    @Option(help: "Seed of the data order (with --shuffle).")
    var seed: UInt64 = 0
    @Flag(help: "Shuffle the rows (a new permutation each pass over the data).")
    var shuffle = false
    @Option(help: "Also write the checkpoint to --out every N steps (0: only at the end).")
    var saveEvery: Int = 0
    @Option(help: "Continue the run saved in this checkpoint directory.")
    var resume: String?
    @Flag(help: "Print one JSON line per step: step, loss, grad_norm, lr, tokens_per_s.")
    var json = false
    @Flag(help: "Recompute each layer's activations in the backward instead of keeping them.")
    var recompute = false
    @Option(help: ClusterChoice.help)
    var cluster: String = "local"

    func run() async throws {
        do {
            try await train()
        } catch let error as RemoteError {
            throw CLIError(error.message)
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError("\(error)")
        }
    }

    private func train() async throws {
        // Flags.
        let rayAddress = try ClusterChoice(parsing: cluster).rayAddress
        guard device == "cpu" || device == "cuda" else { throw CLIError("unknown device '\(device)' (use cpu or cuda)") }
        guard trainers >= 1 else { throw CLIError("--trainers must be at least 1, got \(trainers)") }
        guard steps >= 1 else { throw CLIError("--steps must be at least 1, got \(steps)") }
        guard batchSize >= 1 else { throw CLIError("--batch-size must be at least 1, got \(batchSize)") }
        guard gradAccum >= 1 else { throw CLIError("--grad-accum must be at least 1, got \(gradAccum)") }
        guard batchSize % (trainers * gradAccum) == 0 else {
            throw CLIError("--batch-size \(batchSize) does not split into \(trainers) trainer(s) × \(gradAccum) micro-batch(es); use a multiple of \(trainers * gradAccum)")
        }
        guard lr > 0, lr.isFinite else { throw CLIError("--lr must be positive, got \(lr)") }
        let betaParts = betas.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard betaParts.count == 2, let beta1 = betaParts[0], let beta2 = betaParts[1], (0..<1).contains(beta1), (0..<1).contains(beta2) else {
            throw CLIError("--betas must be two numbers in [0, 1) separated by a comma, like 0.9,0.95; got '\(betas)'")
        }
        guard eps > 0 else { throw CLIError("--eps must be positive, got \(eps)") }
        guard weightDecay >= 0 else { throw CLIError("--weight-decay must be >= 0, got \(weightDecay)") }
        guard maxGradNorm >= 0 else { throw CLIError("--max-grad-norm must be >= 0 (0: no clipping), got \(maxGradNorm)") }
        guard let kind = LearningRateSchedule.Kind(rawValue: schedule) else { throw CLIError("unknown --schedule '\(schedule)' (use constant or cosine)") }
        guard warmupSteps >= 0 else { throw CLIError("--warmup-steps must be >= 0, got \(warmupSteps)") }
        guard saveEvery >= 0 else { throw CLIError("--save-every must be >= 0, got \(saveEvery)") }
        let mixedPrecision = try CLIParse.mixedPrecision(dtype, device: device)

        // Model, data, output: every user error before any process starts.
        let config: ModelConfig
        do {
            config = try ModelConfig.load(directory: model)
        } catch {
            throw CLIError("cannot load the model \(model): \(error)")
        }
        let tokenizerPath = model + "/tokenizer.json"
        let data = try TrainingData.load(path: data, config: config) {
            guard FileManager.default.fileExists(atPath: tokenizerPath) else {
                throw TrainingError("JSONL data is tokenized with the model's tokenizer.json, which \(model) does not have")
            }
            return try Tokenizer(path: tokenizerPath)
        }
        try Checkpoint.checkWritable(out)
        var startStep = 0, position = 0
        if let resume {
            let state = try Checkpoint.state(of: resume, for: config)
            startStep = state.step
            position = state.dataPosition
            guard startStep < steps else {
                throw CLIError("--resume \(resume) is already at step \(startStep); --steps \(steps) asks for no more (--steps counts the whole run)")
            }
        }

        // The trainer group: trainer i on device i, 0.4 of it.
        let spec = try DeviceSpec(parsing: devices ?? (device == "cuda" ? "cuda" : "cpu:\(trainers)"))
        switch (device, spec) {
        case ("cuda", .cpu): throw CLIError("--device cuda runs on GPUs; --devices \(devices ?? "") names CPU devices")
        case ("cpu", .cuda): throw CLIError("--devices cuda needs --device cuda")
        default: break
        }
        let cluster = try await Cluster.make(rayAddress: rayAddress, devices: spec)
        do {
            try await run(cluster: cluster, config: config, data: data, beta1: beta1, beta2: beta2, kind: kind,
                          startStep: startStep, position: position, mixedPrecision: mixedPrecision)
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }

    private func run(cluster: Cluster, config: ModelConfig, data: TrainingData, beta1: Float, beta2: Float,
                     kind: LearningRateSchedule.Kind, startStep: Int, position: Int, mixedPrecision: Bool) async throws {
        // On Ray: every device the cluster offers (Ray reports them when the driver joins).
        let available = cluster.layoutDevices().count
        guard available >= trainers else {
            throw CLIError("--trainers \(trainers) needs \(trainers) devices; \(cluster.isRay ? "the Ray cluster offers" : "there \(available == 1 ? "is" : "are")") \(available)")
        }
        let pg = try cluster.placementGroup(Array(repeating: ResourceBundle(gpu: 1), count: trainers), name: "trainers")
        try await pg.ready()
        let group = try await TrainerGroup(cluster: cluster, group: pg, bundles: Array(0..<trainers), modelDirectory: model,
                                           weightsDirectory: resume)
        if trainers > 1 || cluster.isRay {
            // On stderr: --json keeps stdout to one JSON line per step.
            FileHandle.standardError.write(Data("\(trainers) trainer(s) on \(group.hosts.count) host(s)\(trainers > 1 ? ", gradients all-reduced by \(group.transport.rawValue)" : "")\n".utf8))
        }
        let hyper = AdamWHyperparameters(learningRate: lr, beta1: beta1, beta2: beta2, epsilon: eps, weightDecay: weightDecay)
        let lrSchedule = LearningRateSchedule(kind: kind, peak: lr, warmupSteps: warmupSteps, totalSteps: steps)
        let clip: Float? = maxGradNorm > 0 ? maxGradNorm : nil
        try await group.configure(ConfigureOptimizer(hyper: hyper, schedule: lrSchedule, maxGradNorm: clip, recomputeActivations: recompute,
                                                     mixedPrecision: mixedPrecision))
        if let resume { _ = try await group.loadCheckpoint(resume) }

        let sampler = BatchSampler(rows: data.rows, batchSize: batchSize, shuffle: shuffle, seed: seed)
        let fingerprint = ModelFingerprint(config: config)
        var position = position
        func state(_ step: Int) -> TrainerState {
            TrainerState(step: step, schedule: lrSchedule, hyper: hyper, maxGradNorm: clip, dataPosition: position,
                         batchSize: batchSize, gradientAccumulation: gradAccum, shuffle: shuffle, seed: seed, model: fingerprint)
        }
        let progress = ProgressLine(enabled: !json && isatty(STDOUT_FILENO) != 0, total: steps)
        for step in startStep..<steps {
            let start = ContinuousClock.now
            let rows = sampler.rows(from: position)
            let shards = try MicroBatch.split(data, rows: rows, ranks: trainers, accumulation: gradAccum)
            let stats = try await group.step(shards)
            position += batchSize
            let seconds = max((ContinuousClock.now - start).inSeconds, 1e-9)
            let tokensPerSecond = Double(stats.tokens) / seconds
            if json {
                try CLIOutput.printJSON(["step": stats.step, "loss": stats.loss, "grad_norm": stats.gradNorm,
                                         "lr": Double("\(stats.learningRate)") ?? Double(stats.learningRate), "tokens_per_s": tokensPerSecond])
            } else if progress.enabled {
                progress.update(step: stats.step, loss: stats.loss, lr: stats.learningRate, tokensPerSecond: tokensPerSecond)
            } else {
                print(String(format: "step %d/%d  loss %.4f  grad_norm %.4f  lr %.3e  %.0f tokens/s",
                             stats.step, steps, stats.loss, stats.gradNorm, Double(stats.learningRate), tokensPerSecond))
            }
            if saveEvery > 0 && stats.step % saveEvery == 0 && stats.step < steps {
                try await group.save(to: out, state: state(stats.step))
            }
        }
        try await group.save(to: out, state: state(steps))
        progress.finish()
        if !json { print("wrote the checkpoint of step \(steps) to \(out)") }
    }
}

/// A one-line progress bar on a terminal, redrawn in place.
private final class ProgressLine {
    let enabled: Bool
    let total: Int

    init(enabled: Bool, total: Int) {
        self.enabled = enabled
        self.total = total
    }

    func update(step: Int, loss: Double, lr: Float, tokensPerSecond: Double) {
        guard enabled else { return }
        let width = 30, filled = min(width, width * step / max(total, 1))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let line = String(format: "\r%@ %d/%d  loss %.4f  lr %.2e  %.0f tok/s\u{1B}[K", bar, step, total, loss, Double(lr), tokensPerSecond)
        FileHandle.standardOutput.write(Data(line.utf8))
    }

    func finish() {
        if enabled { print("") }
    }
}

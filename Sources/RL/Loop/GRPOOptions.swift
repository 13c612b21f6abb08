import Cluster
import Compute

/// Everything a GRPO run is configured with; the CLI's flags map one to one.
public struct GRPOOptions: Sendable {
    /// The model to train (Hugging Face directory), also the frozen reference of the KL term.
    public var model: String
    /// Where metrics.jsonl, reward.svg, summary.json and checkpoint/ go.
    public var outputDirectory: String
    public var devices: DeviceSpec = .cpu(count: 4)
    /// Data-parallel trainers (nil: one per device; each device's engine ranks need a trainer there).
    public var trainers: Int?
    public var tensorParallelSize = 2
    public var trainerFraction = 0.4
    public var workerFraction = 0.4
    public var memoryUtilization = 0.4
    public var engineDType: DType = .f32
    /// The trainers' bf16-mixed recipe (GPUs: f32 master weights and AdamW, bf16 matmuls); f32 otherwise.
    public var mixedPrecision = false

    public var steps = 20
    /// P: prompts per step.
    public var promptsPerStep = 8
    /// G: completions per prompt.
    public var groupSize = 8
    public var maxTokens = 16
    public var temperature: Float = 1.0
    public var topP: Float = 1.0
    /// Stop strings: a completion is cut before the first (single-token ones also stop generation).
    public var stop: [String] = []

    public var learningRate: Float = 1e-5
    /// Optimizer updates of linear learning-rate warmup (fresh AdamW moments make the first updates large).
    public var warmupSteps = 0
    public var weightDecay: Float = 0
    public var maxGradNorm: Float? = 1.0
    public var klCoefficient: Float = 0
    public var clipLow: Float = 0.2
    public var clipHigh: Float = 0.2
    public var lossAggregation: LossAggregation = .tokenMean
    public var rewardScaling: RewardScaling = .group
    /// K: mini-batch updates per rollout batch.
    public var updatesPerBatch = 1
    /// Truncated importance sampling cap (engine/trainer mismatch); nil: off.
    public var importanceCap: Float?
    /// Sequences per micro-batch on a trainer (bounds activation memory).
    public var microBatchSequences = 16
    /// 0: engines stay awake; 1: they release the KV cache while the trainers work; 2: the weights too.
    public var sleepLevel = 0

    /// Evaluate every K steps (and at step 0, and after the last step); 0: only at the start and end.
    public var evalEvery = 5
    /// Held-out prompts per evaluation (0: no evaluation).
    public var evalPrompts = 64
    /// Checkpoint every K steps (and at the end); 0: only at the end.
    public var saveEvery = 0
    public var seed: UInt64 = 0
    /// A previous run's output directory to continue from (its checkpoint/ and metrics.jsonl).
    public var resume: String?
    /// The worker executable (tests run the built `colocate`).
    public var workerExecutable: String?
    /// Run on the Ray cluster at this address (`auto`, `HOST:PORT`) instead of this host
    /// (`--cluster ray:ADDRESS`). The model, the output directory and the executable must be at the same
    /// paths on every node (a shared file system): rank 0 of the trainers writes the checkpoint.
    public var rayAddress: String?

    public init(model: String, outputDirectory: String) {
        self.model = model
        self.outputDirectory = outputDirectory
    }

    /// Rejects values that cannot run, with the flag's name.
    public func validate() throws(RLError) {
        func check(_ ok: Bool, _ message: String) throws(RLError) { if !ok { throw RLError(message) } }
        try check(steps >= 1, "--steps must be ≥ 1, got \(steps)")
        try check(promptsPerStep >= 1, "--prompts-per-step must be ≥ 1, got \(promptsPerStep)")
        try check(groupSize >= 2, "--group-size must be ≥ 2 (advantages compare completions of one prompt), got \(groupSize)")
        try check(maxTokens >= 1, "--max-tokens must be ≥ 1, got \(maxTokens)")
        try check(learningRate > 0 && learningRate.isFinite, "--lr must be > 0, got \(learningRate)")
        try check(klCoefficient >= 0, "--kl-coef must be ≥ 0, got \(klCoefficient)")
        try check(clipLow >= 0 && clipLow < 1, "--clip-eps-low must be in [0, 1), got \(clipLow)")
        try check(clipHigh >= 0, "--clip-eps-high must be ≥ 0, got \(clipHigh)")
        try check(updatesPerBatch >= 1 && updatesPerBatch <= promptsPerStep * groupSize,
                  "--updates-per-batch must be in 1...\(promptsPerStep * groupSize) (the rollouts per step), got \(updatesPerBatch)")
        try check([0, 1, 2].contains(sleepLevel), "--sleep-level must be 0, 1 or 2, got \(sleepLevel)")
        try check(evalEvery >= 0, "--eval-every must be ≥ 0, got \(evalEvery)")
        try check(saveEvery >= 0, "--save-every must be ≥ 0, got \(saveEvery)")
        try check(microBatchSequences >= 1, "the micro-batch size must be ≥ 1")
        if let c = importanceCap { try check(c >= 1, "the importance-sampling cap must be ≥ 1, got \(c)") }
    }
}

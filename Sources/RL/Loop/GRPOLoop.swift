import Colocation
import Cluster
import Compute
import Engine
import Foundation
import Models
import Training
import WeightSync

/// The GRPO loop on colocated engines and trainers, the seed's layout by default: data-parallel trainers
/// (one per device, a share of it each) and tensor-parallel engines on the same devices.
///
/// A step: the engines generate G completions of each of P prompts with their log-probs → rewards →
/// group-normalised advantages → (log-probs of the policy before the update and of the reference, when
/// needed) → K mini-batch updates of the clipped policy-gradient loss, gradients summed across the
/// trainers → the trainers push the new weights into every engine rank on their device. With
/// `sleepLevel` ≥ 1 the engines sleep from after generation until the push.
public final class GRPOLoop {
    public let options: GRPOOptions
    public let prompts: any PromptSource
    public let reward: Reward
    /// Where progress lines go (one per step when stderr is not a terminal).
    public let log: @Sendable (String) -> Void

    /// Called in each step between the rewards and the trainers' work (tests kill an actor here).
    var beforeTraining: (@Sendable (_ step: Int, _ trainers: [ActorRef], _ engines: [LLM]) async throws -> Void)?

    public init(options: GRPOOptions, prompts: any PromptSource, reward: Reward = .exactMatch,
                log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.options = options
        self.prompts = prompts
        self.reward = reward
        self.log = log
    }

    /// The files of a run's output directory.
    public enum Files {
        public static let metrics = "metrics.jsonl"
        public static let plot = "reward.svg"
        public static let summary = "summary.json"
        public static let checkpoint = "checkpoint"
    }

    /// Runs the loop to the end and returns the summary. Errors are one line (`RLError`), and the last
    /// checkpoint written stays intact (checkpoints are replaced atomically).
    public func run() async throws -> RunSummary {
        try options.validate()
        let fm = FileManager.default
        try fm.createDirectory(atPath: options.outputDirectory, withIntermediateDirectories: true)
        var clusterOptions = ClusterOptions()
        if let exe = options.workerExecutable { clusterOptions.workerExecutable = exe }
        let cluster: Cluster
        do {
            cluster = try await Cluster.make(rayAddress: options.rayAddress, devices: options.devices, options: clusterOptions)
        } catch {
            throw RLError("\(error)")
        }
        do {
            let summary = try await run(on: cluster)
            await cluster.shutdown()
            return summary
        } catch {
            await cluster.shutdown()
            if error is RLError { throw error }
            throw RLError("\(error)")
        }
    }

    /// Engines, trainers and what ties them together during a run.
    struct Setup {
        var layout: ColocatedLayout
        var trainers: TrainerGroup
        var engines: [LLM]
        var sleepers: [LLM]
        var tokenizer: Tokenizer
        var eos: Set<Int32>
        var padding: Int32
        var stopTokenIds: [Int32]
        /// Each engine rank's process id, by engine and rank: to name the one that died.
        var enginePIDs: [[Int32]]
    }

    private func run(on cluster: Cluster) async throws -> RunSummary {
        let o = options
        let started = ContinuousClock.now
        // On Ray the layout is planned over one stand-in per device asked for; Ray then places them.
        var deviceCount: Int?
        if case .cpu(let count, _) = o.devices { deviceCount = count }
        let layout = try ColocatedLayout(devices: cluster.layoutDevices(count: deviceCount), tensorParallelSize: o.tensorParallelSize,
                                         trainerFraction: o.trainerFraction, workerFraction: o.workerFraction)
        let trainerCount = o.trainers ?? layout.trainers.count
        guard trainerCount >= 1, trainerCount <= layout.trainers.count else {
            throw RLError("--trainers must be in 1...\(layout.trainers.count) (one per device at most), got \(trainerCount)")
        }
        let engineBundles = Set(layout.engines.flatMap { $0.map(\.bundleIndex) })
        guard engineBundles.isSubset(of: Set(0..<trainerCount)) else {
            throw RLError("every device with an engine rank needs a trainer to push its weights: use --trainers \(layout.trainers.count)")
        }
        let config = try ModelConfig.load(directory: o.model)
        guard let tokenizer = try? Tokenizer(path: o.model + "/tokenizer.json") else {
            throw RLError("\(o.model) has no readable tokenizer.json (the RL loop works on text prompts)")
        }
        let pg = try cluster.placementGroup(layout.bundles, strategy: .pack, name: "colocate-rl")
        try await pg.ready()
        if let nodes = pg.bundleNodes {
            log("Ray placed the bundles on nodes: " + nodes.enumerated().map { "\($0.offset): \($0.element.prefix(12))" }.joined(separator: ", "))
        }

        // Where a resumed run stands: its checkpoint holds the weights, the optimizer and the RL step.
        var firstStep = 1
        var weightsDirectory: String?
        if let resume = o.resume {
            let dir = resume + "/" + Files.checkpoint
            let state = try TrainerState.load(directory: dir)
            firstStep = state.dataPosition / max(state.batchSize, 1) + 1
            weightsDirectory = dir
            if URL(fileURLWithPath: resume).standardizedFileURL != URL(fileURLWithPath: o.outputDirectory).standardizedFileURL {
                let from = resume + "/" + Files.metrics, to = o.outputDirectory + "/" + Files.metrics
                try? FileManager.default.removeItem(atPath: to)
                if FileManager.default.fileExists(atPath: from) { try FileManager.default.copyItem(atPath: from, toPath: to) }
            }
            log("resuming from \(dir) at step \(firstStep)")
        }

        log("layout: \(layout.devices.count) devices, \(trainerCount) trainers at \(o.trainerFraction), \(layout.engines.count) engines of TP \(layout.tensorParallelSize) at \(o.workerFraction)")
        let trainers = try await TrainerGroup(cluster: cluster, group: pg, bundles: Array(0..<trainerCount), modelDirectory: o.model,
                                              weightsDirectory: weightsDirectory, deviceFraction: o.trainerFraction)
        if trainers.worldSize > 1 {
            log("trainers: \(trainers.worldSize) on \(trainers.hosts.count) host(s), gradients all-reduced by \(trainers.transport.rawValue)")
        }
        try await trainers.configure(ConfigureOptimizer(
            hyper: AdamWHyperparameters(learningRate: o.learningRate, weightDecay: o.weightDecay),
            schedule: LearningRateSchedule(kind: .constant, peak: o.learningRate, warmupSteps: o.warmupSteps), maxGradNorm: o.maxGradNorm,
            mixedPrecision: o.mixedPrecision))
        if let weightsDirectory { _ = try await trainers.loadCheckpoint(weightsDirectory) }
        if o.klCoefficient > 0 { _ = try await trainers.callAll(LoadReferenceModel(directory: o.model)) }

        var engines: [LLM] = []
        for e in layout.engines.indices {
            engines.append(try await LLM(cluster: cluster, model: o.model, tensorParallelSize: layout.tensorParallelSize,
                                         placement: (pg, layout.bundleIndices(ofEngine: e)), workerFraction: o.workerFraction,
                                         memoryUtilization: o.memoryUtilization, dtype: o.engineDType, name: "engine-\(e)"))
        }
        let sleepers: [LLM] = o.sleepLevel > 0 ? engines : []
        // Push sync: engine ranks export their weight buffers once; each trainer attaches to those on its device.
        try await attachTrainers(trainers, to: engines)

        let eos = Set(config.eosTokenIds.map { Int32($0) })
        let padding = Int32(config.padTokenId ?? config.eosTokenIds.first ?? 0)
        // Single-token stop strings also stop generation; longer ones only cut the text.
        let stopIds = o.stop.compactMap { s -> Int32? in let ids = tokenizer.encode(s); return ids.count == 1 ? ids[0] : nil }
        // Process ids name a dead rank; on Ray they are other hosts' (not checked from here).
        var pids: [[Int32]] = []
        if !cluster.isRay { for engine in engines { pids.append(try await engine.describe().map(\.pid)) } }
        let setup = Setup(layout: layout, trainers: trainers, engines: engines, sleepers: sleepers, tokenizer: tokenizer,
                          eos: eos, padding: padding, stopTokenIds: stopIds, enginePIDs: pids)
        let maxPrompt = (0..<4).map {
            tokenizer.encode(prompts.trainExample(at: $0, seed: o.seed).prompt, addSpecialTokens: !prompts.chatFormatted).count
        }.max() ?? 0
        if maxPrompt + o.maxTokens > config.maxPositions {
            throw RLError("prompts of \(maxPrompt) tokens + --max-tokens \(o.maxTokens) exceed the model's \(config.maxPositions) positions")
        }

        // The engines start from the trainers' weights (a resumed run's checkpoint, or the model).
        _ = try await sync(setup)

        let metrics = try MetricsLog(path: o.outputDirectory + "/" + Files.metrics, keepBefore: o.resume == nil ? nil : firstStep)
        let evalSet = prompts.evalExamples(count: o.evalPrompts)
        let bar = ProgressBar(totalSteps: o.steps)
        let verbose = isatty(2) != 1
        if firstStep == 1 && !evalSet.isEmpty {
            var m = StepMetrics(step: 0)
            m.evalAccuracy = try await evaluate(evalSet, setup)
            try metrics.append(m)
            log(String(format: "step 0: held-out accuracy %.1f%% (%d prompts)", m.evalAccuracy! * 100, evalSet.count))
        }
        var checkpoint: String?
        if firstStep > o.steps { log("the checkpoint is at step \(firstStep - 1): nothing left to do for --steps \(o.steps)") }
        for step in firstStep...max(firstStep, o.steps) where step <= o.steps {
            var m: StepMetrics
            do {
                m = try await self.step(step, setup)
                let evaluates = step == o.steps || (o.evalEvery > 0 && step % o.evalEvery == 0)
                if evaluates && !evalSet.isEmpty { m.evalAccuracy = try await evaluate(evalSet, setup) }
                try metrics.append(m)
                if step == o.steps || (o.saveEvery > 0 && step % o.saveEvery == 0) {
                    checkpoint = try await save(step, setup)
                }
            } catch {
                throw RLError("step \(step): \(deadEngineRank(setup).map { "\($0) died: " } ?? "")\(error)")
            }
            try RewardPlot.svg(metrics.records, title: "GRPO on \(prompts.name)")
                .write(toFile: o.outputDirectory + "/" + Files.plot, atomically: true, encoding: .utf8)
            bar.update(step: step, reward: m.rewardMean, accuracy: metrics.records.last { $0.evalAccuracy != nil }?.evalAccuracy)
            if verbose {
                var line = String(format: "step %d/%d: reward %.3f ± %.3f, length %.1f, grad norm %.3f, %.2f s",
                                  step, o.steps, m.rewardMean ?? 0, m.rewardStd ?? 0, m.completionLengthMean ?? 0, m.gradNorm ?? 0,
                                  m.fields.filter { $0.key.hasPrefix("time_") }.reduce(0) { $0 + $1.value })
                if let a = m.evalAccuracy { line += String(format: ", held-out accuracy %.1f%%", a * 100) }
                log(line)
            }
        }
        bar.finish()
        for engine in engines { await engine.shutdown() }
        trainers.stop()
        let summary = RunSummary(task: prompts.name, model: o.model, records: metrics.records, seconds: (ContinuousClock.now - started).inSeconds,
                                 outputDirectory: o.outputDirectory, checkpoint: checkpoint ?? (o.resume.map { $0 + "/" + Files.checkpoint }))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(summary).write(to: URL(fileURLWithPath: o.outputDirectory + "/" + Files.summary))
        return summary
    }

    // MARK: - One step

    private func step(_ step: Int, _ s: Setup) async throws -> StepMetrics {
        let o = options
        var m = StepMetrics(step: step)
        let clock = ContinuousClock()

        // 1. Generate G completions of each of P prompts, spread over the engines.
        var t0 = clock.now
        let examples = (0..<o.promptsPerStep).map { prompts.trainExample(at: (step - 1) * o.promptsPerStep + $0, seed: o.seed) }
        let params = SamplingParams(maxTokens: o.maxTokens, temperature: o.temperature, topP: o.topP,
                                    seed: o.seed &* 1_000_003 &+ UInt64(step), n: o.groupSize, stopTokenIds: s.stopTokenIds)
        let outputs = try await generate(examples.map(\.prompt), params, s)
        var rollouts: [Rollout] = []
        for (g, out) in outputs.enumerated() {
            for c in out.outputs {
                rollouts.append(Rollout(group: g, promptIds: out.promptTokenIds, completionIds: c.tokenIds, engineLogProbs: c.logprobs,
                                        truncated: c.finishReason == .length, text: try text(of: c.tokenIds, s)))
            }
        }
        m.timeGenerate = (clock.now - t0).inSeconds

        // The engines sleep while the trainers work.
        t0 = clock.now
        var released = 0
        for sleeper in s.sleepers { released += try await sleeper.sleep(level: o.sleepLevel).bytesReleased }
        m.timeSleep = (clock.now - t0).inSeconds
        if !s.sleepers.isEmpty { m.sleepBytesReleased = released }

        // 2. Rewards; 3. advantages.
        t0 = clock.now
        for i in rollouts.indices { rollouts[i].reward = try await reward(examples[rollouts[i].group], rollouts[i].text) }
        let rewards = rollouts.map(\.reward)
        let adv = try GroupAdvantages(rewards: rewards, groupSize: o.groupSize, scaling: o.rewardScaling)
        for i in rollouts.indices { rollouts[i].advantage = adv.advantages[i] }
        m.timeReward = (clock.now - t0).inSeconds
        let mean = rewards.reduce(0, +) / Double(rewards.count)
        m.rewardMean = mean
        m.rewardStd = rewards.count > 1 ? (rewards.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(rewards.count - 1)).squareRoot() : 0
        m.fracZeroStdGroups = adv.fractionZeroStdGroups
        let lengths = rollouts.map(\.completionIds.count)
        m.completionLengthMean = Double(lengths.reduce(0, +)) / Double(lengths.count)
        m.completionLengthMax = lengths.max() ?? 0
        m.completionClippedFraction = Double(rollouts.filter(\.truncated).count) / Double(rollouts.count)
        m.tokensSampled = lengths.reduce(0, +)
        m.tokensPerSecond = Double(m.tokensSampled!) / max(m.timeGenerate!, 1e-9)

        if let beforeTraining { try await beforeTraining(step, s.trainers.trainers, s.engines) }

        // 4. Log-probs before the update (several updates per batch) and of the reference (KL).
        t0 = clock.now
        let all = Array(rollouts.indices)
        let old: RolloutBatcher.PerToken? = o.updatesPerBatch > 1 ? try await logProbs(all, rollouts, reference: false, s) : nil
        let reference: RolloutBatcher.PerToken? = o.klCoefficient > 0 ? try await logProbs(all, rollouts, reference: true, s) : nil
        m.timeLogprob = (clock.now - t0).inSeconds

        // 5–6. K mini-batch updates of the policy loss; gradients summed over the data-parallel trainers.
        t0 = clock.now
        var policy = PolicyStatistics()
        var norms: [Double] = [], lr: Float = 0
        let ranks = s.trainers.worldSize
        for miniBatch in RolloutBatcher.deal(all, into: o.updatesPerBatch) {
            let tokens = miniBatch.reduce(0) { $0 + rollouts[$1].completionIds.count }
            let calls = RolloutBatcher.deal(miniBatch, into: ranks).map { shard in
                PolicyStep(microBatches: RolloutBatcher.chunks(shard, of: o.microBatchSequences).map {
                    RolloutBatcher.microBatch($0, rollouts: rollouts, padding: s.padding, aggregation: o.lossAggregation,
                                              globalSequences: miniBatch.count, globalTokens: tokens, maxTokens: o.maxTokens,
                                              old: old, reference: reference, importanceCap: o.importanceCap)
                }, clipLow: o.clipLow, clipHigh: o.clipHigh, klCoefficient: o.klCoefficient, entropy: true)
            }
            let replies = try await callEach(s.trainers, calls)
            policy = replies.reduce(policy) { $0 + $1.policy }
            norms.append(replies[0].stats.gradNorm)
            lr = replies[0].stats.learningRate
        }
        m.timeTrain = (clock.now - t0).inSeconds
        m.entropy = policy.meanEntropy
        m.kl = policy.meanKL
        m.clipFractionLow = policy.clipFractionLow
        m.clipFractionHigh = policy.clipFractionHigh
        m.gradNorm = norms.reduce(0, +) / Double(norms.count)
        m.lr = Double("\(lr)") ?? Double(lr)  // 1e-05, not 9.99999974737875e-06

        // 7. Wake (weights first after a level-2 sleep), push the new weights, wake the KV cache.
        var wake = 0.0
        if o.sleepLevel == 2 {
            t0 = clock.now
            for sleeper in s.sleepers { try await sleeper.wakeUp(tags: [.weights]) }
            // On GPUs the woken weights are new memory at the old addresses: the trainers map it again.
            try await attachTrainers(s.trainers, to: s.engines)
            wake += (clock.now - t0).inSeconds
        }
        m.timeSync = try await sync(s)
        if o.sleepLevel > 0 {
            t0 = clock.now
            for sleeper in s.sleepers { try await sleeper.wakeUp(tags: [.kvCache]) }
            wake += (clock.now - t0).inSeconds
        }
        m.timeWake = wake
        return m
    }

    /// The completion's text for scoring: the ids before EOS, decoded, cut at the first stop string.
    private func text(of ids: [Int32], _ s: Setup) throws -> String {
        CompletionText.cut(try s.tokenizer.decode(CompletionText.untilEOS(ids, eos: s.eos)), stop: options.stop)
    }

    /// Generates for `prompts` on every engine at once (contiguous slices), outputs in prompt order.
    private func generate(_ prompts: [String], _ params: SamplingParams, _ s: Setup) async throws -> [RequestOutput] {
        let slices = (0..<s.engines.count).map { e in
            (prompts.count * e / s.engines.count)..<(prompts.count * (e + 1) / s.engines.count)
        }
        return try await withThrowingTaskGroup(of: (Int, [RequestOutput]).self) { group in
            for (e, range) in slices.enumerated() where !range.isEmpty {
                let engine = s.engines[e], part = Array(prompts[range])
                var p = params
                p.seed = params.seed.map { $0 &+ UInt64(e) &* 0x9E37_79B9 }
                let special = !self.prompts.chatFormatted
                group.addTask { (e, try await engine.generate(part, p, addSpecialTokens: special)) }
            }
            var parts = [[RequestOutput]](repeating: [], count: slices.count)
            for try await (e, out) in group { parts[e] = out }
            return parts.flatMap { $0 }
        }
    }

    /// Greedy decoding of the held-out prompts; the fraction whose completion exactly matches the answer.
    private func evaluate(_ examples: [RLExample], _ s: Setup) async throws -> Double {
        guard !examples.isEmpty else { return 0 }
        let outputs = try await generate(examples.map(\.prompt), SamplingParams(maxTokens: options.maxTokens, temperature: 0, seed: 0,
                                                                                  stopTokenIds: s.stopTokenIds), s)
        var correct = 0
        for (e, out) in zip(examples, outputs) where CompletionText.isExactMatch(try text(of: out.outputs[0].tokenIds, s), answer: e.answer) {
            correct += 1
        }
        return Double(correct) / Double(examples.count)
    }

    /// Log-probs of each rollout's completion tokens on the trainers (each rank a share of the rollouts).
    private func logProbs(_ indices: [Int], _ rollouts: [Rollout], reference: Bool, _ s: Setup) async throws -> RolloutBatcher.PerToken {
        let shards = RolloutBatcher.deal(indices, into: s.trainers.worldSize)
        let micro = shards.map { RolloutBatcher.chunks($0, of: options.microBatchSequences) }
        let replies = try await callEach(s.trainers, micro.map { chunks in
            ComputeLogProbs(batches: chunks.map { RolloutBatcher.tokens($0, rollouts: rollouts, padding: s.padding) }, reference: reference)
        })
        var out: RolloutBatcher.PerToken = [:]
        for (rank, chunks) in micro.enumerated() {
            for (c, chunk) in chunks.enumerated() {
                let lp = replies[rank][c].logProbs
                let sequence = lp.count / max(chunk.count, 1)
                for (b, i) in chunk.enumerated() {
                    let start = b * sequence + rollouts[i].promptIds.count
                    out[i] = Array(lp[start..<(start + rollouts[i].completionIds.count)])
                }
            }
        }
        return out
    }

    /// The first engine rank whose process is gone ("engine-1 rank 0 (pid 123)"), if any: a push into
    /// it or a generation on its engine fails, and the error should say which rank it was.
    private func deadEngineRank(_ s: Setup) -> String? {
        for (e, pids) in s.enginePIDs.enumerated() {
            for (r, pid) in pids.enumerated() where kill(pid, 0) != 0 && errno == ESRCH {
                return "\(s.engines[e].ranks.name) rank \(r) (pid \(pid))"
            }
        }
        return nil
    }

    /// Sends `calls[i]` to trainer i and waits for every reply (``TrainerGroup/callEach``: the error of
    /// a trainer that died first, and the control-plane all-reduce aborted at the first failure).
    private func callEach<C: RemoteCall>(_ group: TrainerGroup, _ calls: [C]) async throws -> [C.Reply] {
        try await group.callEach(calls)
    }

    /// Every trainer pushes its weights into the engine ranks on its device; returns the seconds taken.
    /// Every trainer attaches to the engine ranks on its device (push sync).
    private func attachTrainers(_ trainers: TrainerGroup, to engines: [LLM]) async throws {
        var destinations: [WeightDestination] = []
        for engine in engines { destinations += try await engine.collectiveRPC(ExportWeightDestination()).map(\.destination) }
        _ = try await trainers.callAll(AttachWeightDestinations(destinations: destinations))
    }

    private func sync(_ s: Setup) async throws -> Double {
        let start = ContinuousClock.now
        _ = try await callEach(s.trainers, Array(repeating: PushWeights(), count: s.trainers.worldSize))
        return (ContinuousClock.now - start).inSeconds
    }

    /// Rank 0 writes `checkpoint/` (atomically replaced); the RL step is its data position / P.
    private func save(_ step: Int, _ s: Setup) async throws -> String {
        let o = options
        let dir = o.outputDirectory + "/" + Files.checkpoint
        let state = TrainerState(step: 0, schedule: LearningRateSchedule(kind: .constant, peak: o.learningRate, warmupSteps: o.warmupSteps),
                                 hyper: AdamWHyperparameters(learningRate: o.learningRate, weightDecay: o.weightDecay),
                                 maxGradNorm: o.maxGradNorm, dataPosition: step * o.promptsPerStep, batchSize: o.promptsPerStep,
                                 gradientAccumulation: o.updatesPerBatch, shuffle: false, seed: o.seed,
                                 model: ModelFingerprint(config: s.trainers.config))
        try await s.trainers.save(to: dir, state: state)
        return dir
    }
}

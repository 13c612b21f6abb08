import Cluster
import Compute
import Engine
import Foundation
import Models

/// `colocate bench cold-start`: the time from `LLM(…)` called to the first token of a generation — the
/// real engine, its rank in a worker process of its own — with where the time went: worker process
/// started, device ready, weights loaded, KV cache made, and the first generate (one new token).
///
/// Not timed: writing a preset's random-weight model directory (as `init-model` does) and starting the
/// cluster and its placement group, which an RL job does once for trainers and engines together. The
/// checkpoint just written sits in the page cache, so "weights loaded" is reading from memory, as on a
/// host that loaded the model before.
public struct ColdStartBenchmark: Sendable {
    /// cpu (one virtual CPU device) or cuda (the first GPU).
    public var device = "cpu"
    /// Shapes of the random-weight model written to a temporary directory when no `model` is given.
    public var preset = "opt-125m"
    /// A model directory instead of a preset.
    public var model: String?
    /// The engine's weight dtype (a preset's checkpoint is written in it).
    public var dtype = "f32"
    /// The engine's `memoryUtilization`.
    public var memoryUtilization = 0.4
    /// Prompt tokens of the first generate.
    public var promptTokens = 16
    /// Cold starts in a row, each a new engine (later ones find caches on disk and in the OS warm).
    public var runs = 1

    public init() {}

    public func run() async throws {
        guard device == "cpu" || device == "cuda" else { throw BenchmarkError("unknown device '\(device)' (use cpu or cuda)") }
        guard runs >= 1 else { throw BenchmarkError("--runs must be at least 1, got \(runs)") }
        guard promptTokens >= 1 else { throw BenchmarkError("--prompt-tokens must be at least 1, got \(promptTokens)") }
        guard memoryUtilization > 0, memoryUtilization <= 1 else {
            throw BenchmarkError("--memory-utilization must be in (0, 1], got \(memoryUtilization)")
        }
        let weightType = try BenchmarkError.dtype(dtype)

        let directory = model ?? NSTemporaryDirectory() + "colocate-cold-start-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { if model == nil { try? FileManager.default.removeItem(atPath: directory) } }
        if model == nil {
            let start = ContinuousClock.now
            try ModelDirectory.write(preset: ModelPreset.named(preset), to: directory, seed: 0, dtype: weightType)
            print(String(format: "wrote %@ (random weights, %@) to %@ in %.2f s (not timed)", preset, "\(weightType)", directory, (ContinuousClock.now - start).inSeconds))
        }
        let config = try ModelConfig.load(directory: directory)
        guard promptTokens < config.maxPositions else {
            throw BenchmarkError("--prompt-tokens \(promptTokens) leaves no room in the model's \(config.maxPositions) positions")
        }

        let clusterStart = ContinuousClock.now
        let cluster = try Cluster.local(devices: device == "cuda" ? .cuda : .cpu(count: 1, capacity: nil))
        do {
            let pg = try cluster.placementGroup([ResourceBundle(gpu: 1)], name: "cold-start")
            try await pg.ready()
            print(String(format: "cluster and placement group ready in %.2f s (not timed); device %@", (ContinuousClock.now - clusterStart).inSeconds,
                         cluster.devices.first.map { "\($0)" } ?? "?"))
            for run in 1...runs {
                try await measure(run: run, cluster: cluster, group: pg, directory: directory, weightType: weightType, vocab: config.vocabSize)
            }
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }

    private func measure(run: Int, cluster: Cluster, group: PlacementGroup, directory: String, weightType: DType, vocab: Int) async throws {
        var rng = SplitMix64(seed: UInt64(run))
        let prompt = (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(max(vocab - 4, 1))) + 4 }
        let params = SamplingParams(maxTokens: 1, temperature: 0, seed: 0, ignoreEOS: true)

        let called = monotonicNanoseconds()
        let llm = try await LLM(cluster: cluster, model: directory, tensorParallelSize: 1, placement: (group, [0]),
                                memoryUtilization: memoryUtilization, dtype: weightType, name: "cold-start-\(run)")
        let constructed = monotonicNanoseconds()
        let output: [RequestOutput]
        do {
            output = try await llm.generate(promptTokenIds: [prompt], params)
        } catch {
            await llm.shutdown()
            throw error
        }
        let firstToken = monotonicNanoseconds()
        // Asked after the clock stopped: the rank reports when it reached each stage.
        let ranks = try await llm.describe()
        let breakdown = try await llm.startupBreakdown(ranks: ranks)
        await llm.shutdown()
        guard output.first?.outputs.first?.tokenIds.count == 1 else {
            throw BenchmarkError("the first generate returned \(output.first?.outputs.first?.tokenIds.count ?? 0) tokens instead of 1")
        }

        let seconds = { (from: UInt64, to: UInt64) in Double(to - from) * 1e-9 }
        let total = seconds(called, firstToken)
        let rank = ranks[0]
        print("cold start \(run): \(rank.device.kind) pid \(rank.pid), \(ByteCount.format(rank.weightBytes)) of \(weightType) weights, KV cache \(rank.kvCacheBlocks) blocks × \(rank.blockSize) tokens")
        print("  LLM(…) " + (breakdown?.summary ?? String(format: "%.3f s (the rank did not report its start)", seconds(called, constructed))))
        print(String(format: "  first generate (prompt %d, 1 new token): %.3f s", promptTokens, seconds(constructed, firstToken)))
        print(String(format: "bench cold-start device=%@ model=%@ dtype=%@ run=%d: %.3f s from LLM(…) called to the first token",
                     device, model ?? preset, "\(weightType)", run, total))
    }
}

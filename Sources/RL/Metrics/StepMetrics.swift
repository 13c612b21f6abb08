import Foundation

/// One line of `metrics.jsonl`: what one RL step did, with flat keys (the names TRL and veRL users know).
///
/// Step 0 is the evaluation before any update and carries only `step` and `eval_accuracy`; step s ≥ 1
/// is the s-th update, with `eval_accuracy` (measured after it) on steps that evaluate.
public struct StepMetrics: Sendable, Codable, Equatable {
    public var step: Int
    public var rewardMean: Double?
    public var rewardStd: Double?
    public var fracZeroStdGroups: Double?
    public var evalAccuracy: Double?
    public var completionLengthMean: Double?
    public var completionLengthMax: Int?
    public var completionClippedFraction: Double?
    public var entropy: Double?
    public var kl: Double?
    public var clipFractionLow: Double?
    public var clipFractionHigh: Double?
    public var gradNorm: Double?
    public var lr: Double?
    public var tokensSampled: Int?
    public var tokensPerSecond: Double?
    public var timeGenerate: Double?
    public var timeReward: Double?
    public var timeLogprob: Double?
    public var timeTrain: Double?
    public var timeSync: Double?
    public var timeSleep: Double?
    public var timeWake: Double?
    /// Engine memory the sleep after generation gave back, over every engine rank: device free memory
    /// after minus before on GPUs, resident bytes on virtual CPU devices (`--sleep-level` ≥ 1 only).
    public var sleepBytesReleased: Int?

    public init(step: Int) { self.step = step }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case step, rewardMean = "reward_mean", rewardStd = "reward_std", fracZeroStdGroups = "frac_zero_std_groups"
        case evalAccuracy = "eval_accuracy", completionLengthMean = "completion_length_mean"
        case completionLengthMax = "completion_length_max", completionClippedFraction = "completion_clipped_fraction"
        case entropy, kl, clipFractionLow = "clip_fraction_low", clipFractionHigh = "clip_fraction_high"
        case gradNorm = "grad_norm", lr, tokensSampled = "tokens_sampled", tokensPerSecond = "tokens_per_s"
        case timeGenerate = "time_generate", timeReward = "time_reward", timeLogprob = "time_logprob"
        case timeTrain = "time_train", timeSync = "time_sync", timeSleep = "time_sleep", timeWake = "time_wake"
        case sleepBytesReleased = "sleep_bytes_released"
    }

    /// Keys that measure time: they differ between otherwise identical runs.
    public static let timingKeys: Set<String> = [
        "tokens_per_s", "time_generate", "time_reward", "time_logprob", "time_train", "time_sync", "time_sleep", "time_wake",
    ]

    /// The fields present, in the order of the list.
    public var fields: [(key: String, value: Double)] {
        let values: [Double?] = [
            Double(step), rewardMean, rewardStd, fracZeroStdGroups, evalAccuracy, completionLengthMean,
            completionLengthMax.map(Double.init), completionClippedFraction, entropy, kl, clipFractionLow, clipFractionHigh,
            gradNorm, lr, tokensSampled.map(Double.init), tokensPerSecond, timeGenerate, timeReward, timeLogprob,
            timeTrain, timeSync, timeSleep, timeWake, sleepBytesReleased.map(Double.init),
        ]
        return zip(CodingKeys.allCases, values).compactMap { k, v in v.map { (k.rawValue, $0) } }
    }

    /// One JSON object on one line, keys in a fixed order (integers without a fraction; non-finite as null).
    public func jsonLine() -> String {
        let integerKeys: Set<String> = ["step", "completion_length_max", "tokens_sampled", "sleep_bytes_released"]
        let parts = fields.map { key, value -> String in
            let v: String
            if !value.isFinite { v = "null" } else if integerKeys.contains(key) { v = String(Int(value)) } else { v = "\(value)" }
            return "\"\(key)\":\(v)"
        }
        return "{" + parts.joined(separator: ",") + "}"
    }
}

/// `metrics.jsonl`: appended one line per step, flushed as written (a crash keeps the steps done).
public final class MetricsLog {
    public let path: String
    public private(set) var records: [StepMetrics]

    /// Opens `path`, keeping the records of steps < `keepBefore` already in it (a resumed run drops the
    /// lines of steps it will redo) or starting empty.
    public init(path: String, keepBefore: Int? = nil) throws {
        self.path = path
        var kept: [StepMetrics] = []
        if let keepBefore, FileManager.default.fileExists(atPath: path) {
            kept = try Self.read(path).filter { $0.step < keepBefore }
        }
        records = kept
        let text = kept.map { $0.jsonLine() + "\n" }.joined()
        try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    public func append(_ m: StepMetrics) throws {
        records.append(m)
        guard let handle = FileHandle(forWritingAtPath: path) else { throw RLError("cannot write \(path)") }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data((m.jsonLine() + "\n").utf8))
    }

    public static func read(_ path: String) throws -> [StepMetrics] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw RLError("cannot read \(path)")
        }
        let decoder = JSONDecoder()
        return try text.split(separator: "\n").enumerated().map { n, line in
            do { return try decoder.decode(StepMetrics.self, from: Data(line.utf8)) } catch {
                throw RLError("\(path):\(n + 1): not a metrics line")
            }
        }
    }
}

import Foundation

/// What a run did, in a few numbers: printed as a table at the end, `--json` prints it as JSON, and
/// `summary.json` keeps it beside the metrics.
public struct RunSummary: Sendable, Codable, Equatable {
    public var task: String
    public var model: String
    public var steps: Int
    /// Held-out exact-match accuracy before the first update (step 0) and after the last evaluation.
    public var evalAccuracyBefore: Double?
    public var evalAccuracyAfter: Double?
    public var rewardMeanFirst: Double?
    public var rewardMeanLast: Double?
    public var tokensSampled: Int
    public var seconds: Double
    /// Seconds per phase, summed over steps: generate, reward, logprob, train, sync, sleep, wake.
    public var phaseSeconds: [String: Double]
    public var outputDirectory: String
    public var checkpoint: String?

    public init(task: String, model: String, records: [StepMetrics], seconds: Double, outputDirectory: String, checkpoint: String?) {
        self.task = task
        self.model = model
        let updates = records.filter { $0.step > 0 }
        steps = updates.map(\.step).max() ?? 0
        let evals = records.filter { $0.evalAccuracy != nil }
        evalAccuracyBefore = records.first { $0.step == 0 }?.evalAccuracy
        evalAccuracyAfter = evals.last.flatMap { $0.step > 0 ? $0.evalAccuracy : nil }
        rewardMeanFirst = updates.first?.rewardMean
        rewardMeanLast = updates.last?.rewardMean
        tokensSampled = updates.reduce(0) { $0 + ($1.tokensSampled ?? 0) }
        self.seconds = seconds
        var phases: [String: Double] = [:]
        for r in updates {
            for (k, v) in r.fields where k.hasPrefix("time_") { phases[String(k.dropFirst(5)), default: 0] += v }
        }
        phaseSeconds = phases
        self.outputDirectory = outputDirectory
        self.checkpoint = checkpoint
    }

    /// A two-column table for the terminal.
    public func table() -> String {
        func pct(_ v: Double?) -> String { v.map { String(format: "%.1f%%", $0 * 100) } ?? "–" }
        func num(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "–" }
        var rows: [(String, String)] = [
            ("task", task), ("model", model), ("steps", "\(steps)"),
            ("held-out accuracy before", pct(evalAccuracyBefore)), ("held-out accuracy after", pct(evalAccuracyAfter)),
        ]
        if let b = evalAccuracyBefore, let a = evalAccuracyAfter {
            rows.append(("change", String(format: "%+.1f points", (a - b) * 100)))
        }
        rows += [
            ("mean reward, first step", num(rewardMeanFirst)), ("mean reward, last step", num(rewardMeanLast)),
            ("tokens sampled", "\(tokensSampled)"), ("wall time", String(format: "%.1f s", seconds)),
        ]
        for phase in ["generate", "reward", "logprob", "train", "sync", "sleep", "wake"] {
            if let v = phaseSeconds[phase] { rows.append(("  " + phase, String(format: "%.2f s", v))) }
        }
        rows.append(("output", outputDirectory))
        if let checkpoint { rows.append(("checkpoint", checkpoint)) }
        let w = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: w, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }
}

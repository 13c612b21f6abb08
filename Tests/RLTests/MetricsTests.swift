import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import RL

@Suite struct MetricsTests {
    func sample(_ step: Int) -> StepMetrics {
        var m = StepMetrics(step: step)
        m.rewardMean = 0.25 * Double(step)
        m.rewardStd = 0.5
        m.fracZeroStdGroups = 0.125
        m.evalAccuracy = step % 2 == 0 ? 0.1 * Double(step) : nil
        m.completionLengthMean = 3.5
        m.completionLengthMax = 8
        m.completionClippedFraction = 0
        m.entropy = 1.2; m.kl = 0; m.clipFractionLow = 0; m.clipFractionHigh = 0.01
        m.gradNorm = 2.5; m.lr = 1e-5; m.tokensSampled = 128; m.tokensPerSecond = 1000
        m.timeGenerate = 0.1; m.timeReward = 0.001; m.timeLogprob = 0.02; m.timeTrain = 0.3
        m.timeSync = 0.004; m.timeSleep = 0; m.timeWake = 0
        return m
    }

    @Test func jsonLinesHaveExactlyTheIssuesKeysInOrderAndRoundTrip() throws {
        let line = sample(2).jsonLine()
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        let expected = ["step", "reward_mean", "reward_std", "frac_zero_std_groups", "eval_accuracy", "completion_length_mean",
                        "completion_length_max", "completion_clipped_fraction", "entropy", "kl", "clip_fraction_low",
                        "clip_fraction_high", "grad_norm", "lr", "tokens_sampled", "tokens_per_s", "time_generate", "time_reward",
                        "time_logprob", "time_train", "time_sync", "time_sleep", "time_wake"]
        #expect(Set(object.keys) == Set(expected))
        #expect(sample(2).fields.map(\.key) == expected)
        #expect(line.hasPrefix("{\"step\":2,\"reward_mean\":0.5,"))
        #expect(!sample(1).jsonLine().contains("eval_accuracy"))
        #expect(StepMetrics(step: 0).jsonLine() == "{\"step\":0}")

        let path = NSTemporaryDirectory() + "metrics-\(UUID().uuidString).jsonl"
        let log = try MetricsLog(path: path)
        for s in 0..<4 { try log.append(sample(s)) }
        #expect(try MetricsLog.read(path) == (0..<4).map(sample))
        // A resumed run from step 2 keeps steps 0 and 1 and appends after them.
        let resumed = try MetricsLog(path: path, keepBefore: 2)
        try resumed.append(sample(2))
        #expect(try MetricsLog.read(path) == (0..<3).map(sample))
    }

    @Test func plotAndSummaryShowTheRun() throws {
        var records = (1...6).map(sample)
        var zero = StepMetrics(step: 0)
        zero.evalAccuracy = 0.2
        records.insert(zero, at: 0)
        let svg = RewardPlot.svg(records, title: "addition")
        #expect(svg.hasPrefix("<svg"))
        #expect(svg.contains("mean reward (train)") && svg.contains("held-out accuracy") && svg.contains(">step<"))
        #expect(svg.components(separatedBy: "<polyline").count == 4)  // axes + two series
        // Well-formed XML.
        #expect(XMLParser(data: Data(svg.utf8)).parse())

        let summary = RunSummary(task: "addition", model: "m", records: records, seconds: 12, outputDirectory: "/o", checkpoint: "/o/c")
        #expect(summary.steps == 6)
        #expect(summary.evalAccuracyBefore == 0.2)
        #expect(abs(summary.evalAccuracyAfter! - 0.6) < 1e-12)
        #expect(summary.tokensSampled == 6 * 128)
        #expect(abs(summary.phaseSeconds["train"]! - 1.8) < 1e-9)
        let table = summary.table()
        #expect(table.contains("held-out accuracy before  20.0%") || table.contains("20.0%"))
        #expect(table.contains("+40.0 points"))

        let bar = ProgressBar(totalSteps: 10, enabled: false)
        let line = bar.line(step: 4, reward: 0.5, accuracy: nil, elapsed: 8, stepsDone: 4)
        #expect(line.contains("step 4/10") && line.contains("reward 0.500") && line.contains("ETA 12s"))
    }
}

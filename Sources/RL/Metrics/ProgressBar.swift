import Foundation

/// A one-line progress bar on a terminal (stderr): step, ETA and the latest reward and accuracy.
/// Off when stderr is not a terminal, so logs and pipes stay clean.
public final class ProgressBar {
    private let total: Int
    private let enabled: Bool
    private let start = ContinuousClock.now
    private var firstStep: Int?

    public init(totalSteps: Int, enabled: Bool = isatty(2) == 1) {
        total = totalSteps
        self.enabled = enabled
    }

    /// The line for `step` of `total` (exposed for tests).
    public func line(step: Int, reward: Double?, accuracy: Double?, elapsed: Double, stepsDone: Int) -> String {
        let width = 24
        let filled = total == 0 ? width : min(width, step * width / total)
        var s = "[" + String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled) + "]"
        s += " step \(step)/\(total)"
        if let reward { s += String(format: "  reward %.3f", reward) }
        if let accuracy { s += String(format: "  eval %.1f%%", accuracy * 100) }
        if stepsDone > 0 {
            let eta = elapsed / Double(stepsDone) * Double(max(0, total - step))
            s += "  ETA " + Self.duration(eta)
        }
        return s
    }

    public func update(step: Int, reward: Double?, accuracy: Double?) {
        guard enabled else { return }
        if firstStep == nil { firstStep = step }
        let elapsed = (ContinuousClock.now - start)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let text = line(step: step, reward: reward, accuracy: accuracy, elapsed: seconds, stepsDone: step - (firstStep ?? step))
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + text).utf8))
    }

    public func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }
}

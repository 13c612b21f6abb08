import Foundation

/// The learning rate of each optimizer step: `constant` (after an optional linear warmup), or linear
/// warmup then cosine decay to `minimum` at `totalSteps`, as llm.c schedules it:
///
/// - warmup (step s < warmupSteps): `peak · (s + 1) / warmupSteps`;
/// - then `minimum + ½ (peak − minimum)(1 + cos(π · (s − warmupSteps) / (totalSteps − warmupSteps)))`.
///
/// `s` counts updates from 0. `colocate train` decays to a minimum of 0.
public struct LearningRateSchedule: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case constant, cosine
    }

    public var kind: Kind
    public var peak: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var minimum: Float

    public init(kind: Kind = .constant, peak: Float, warmupSteps: Int = 0, totalSteps: Int = 1, minimum: Float = 0) {
        self.kind = kind
        self.peak = peak
        self.warmupSteps = max(0, warmupSteps)
        self.totalSteps = max(1, totalSteps)
        self.minimum = minimum
    }

    public static func constant(_ lr: Float) -> LearningRateSchedule { .init(kind: .constant, peak: lr) }

    /// The rate of update number `step + 1` (`step` counts from 0).
    public func rate(atStep step: Int) -> Float {
        if step < warmupSteps { return peak * Float(step + 1) / Float(warmupSteps) }
        switch kind {
        case .constant:
            return peak
        case .cosine:
            let span = max(1, totalSteps - warmupSteps)
            let progress = min(1, Double(step - warmupSteps) / Double(span))
            let coefficient = 0.5 * (1 + cos(Double.pi * progress))
            return minimum + Float(coefficient) * (peak - minimum)
        }
    }
}

/// How rewards become advantages within a group of completions of one prompt.
public enum RewardScaling: String, Sendable, Codable, CaseIterable {
    /// GRPO: (r − mean) / (std + 1e-4), std unbiased (n − 1), as TRL computes `rewards.view(-1, G).std(dim=1)`.
    case group
    /// Dr. GRPO: r − mean, no division (the std's division biases towards easy and hard prompts).
    case none
}

/// Group-normalised advantages and the group statistics the metrics report.
public struct GroupAdvantages: Sendable, Equatable {
    /// One per completion, in the order of `rewards`.
    public var advantages: [Double]
    /// Fraction of groups whose rewards are all equal (std 0): they contribute no gradient.
    public var fractionZeroStdGroups: Double

    /// `rewards` holds `groupSize` consecutive completions per prompt.
    public init(rewards: [Double], groupSize: Int, scaling: RewardScaling) throws(RLError) {
        guard groupSize >= 2 else { throw RLError("the group size must be at least 2 (advantages compare completions of one prompt), got \(groupSize)") }
        guard rewards.count % groupSize == 0 else { throw RLError("\(rewards.count) rewards do not split into groups of \(groupSize)") }
        var advantages = [Double](repeating: 0, count: rewards.count)
        var zeroStd = 0
        let groups = rewards.count / groupSize
        for g in 0..<groups {
            let r = rewards[(g * groupSize)..<((g + 1) * groupSize)]
            let mean = r.reduce(0, +) / Double(groupSize)
            let variance = r.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(groupSize - 1)
            let std = variance.squareRoot()
            // TRL: torch.isclose(std, 0) with its default tolerances (atol 1e-8).
            if std <= 1e-8 { zeroStd += 1 }
            for (k, x) in r.enumerated() {
                advantages[g * groupSize + k] = scaling == .group ? (x - mean) / (std + 1e-4) : x - mean
            }
        }
        self.advantages = advantages
        fractionZeroStdGroups = groups == 0 ? 0 : Double(zeroStd) / Double(groups)
    }
}

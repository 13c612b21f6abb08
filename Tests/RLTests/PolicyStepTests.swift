import Compute
import Foundation
import Models
import Testing
import Training
@testable import RL

/// The policy loss through the real model and optimizer, in process: a step moves log-probs the way
/// the advantages say.
@Suite struct PolicyStepTests {
    @Test func aStepRaisesPositiveAndLowersNegativeAdvantageCompletions() throws {
        let dir = NSTemporaryDirectory() + "rl-policy-step-\(getpid())"
        try ModelDirectory.write(preset: ModelPreset.named("qwen2-tiny"), to: dir, seed: 1)
        let weights = try TrainerWeights(directory: dir, device: .host)
        let session = try TrainerSession(weights: weights, hyper: AdamWHyperparameters(learningRate: 1e-2, weightDecay: 0),
                                         schedule: .constant(1e-2), maxGradNorm: 1.0)
        let rollouts = [
            Rollout(group: 0, promptIds: [10, 11, 12], completionIds: [20, 21, 2], engineLogProbs: [0, 0, 0], truncated: false, text: "", advantage: 1),
            Rollout(group: 0, promptIds: [10, 11, 12], completionIds: [30, 31], engineLogProbs: [0, 0], truncated: false, text: "", advantage: -1),
        ]
        func completionLogProbs() throws -> [[Float]] {
            let batch = RolloutBatcher.tokens([0, 1], rollouts: rollouts, padding: 0)
            let lp = try session.logProbs(batch)
            return rollouts.enumerated().map { b, r in
                Array(lp[(b * batch.sequence + 3)..<(b * batch.sequence + 3 + r.completionIds.count)])
            }
        }
        let before = try completionLogProbs()
        let micro = RolloutBatcher.microBatch([0, 1], rollouts: rollouts, padding: 0, aggregation: .tokenMean, globalSequences: 2,
                                              globalTokens: 5, maxTokens: 3, old: nil, reference: nil, importanceCap: nil)
        let objective = PolicyObjective(inputs: micro.inputs, wantsEntropy: true)
        let stats = try session.step(microBatches: [(micro.batch, objective)])
        #expect(stats.gradNorm > 0)
        #expect(objective.statistics.tokens == 5 && objective.statistics.meanEntropy > 0)
        let after = try completionLogProbs()
        #expect(after[0].reduce(0, +) > before[0].reduce(0, +), "\(before[0]) → \(after[0])")
        #expect(after[1].reduce(0, +) < before[1].reduce(0, +), "\(before[1]) → \(after[1])")
    }
}

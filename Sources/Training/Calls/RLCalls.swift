import Cluster
import Compute
import Foundation
import Models

/// Loads a frozen reference copy of a model on the trainer (for the KL term of the policy loss): its own
/// host or device memory, never exported, never updated.
public struct LoadReferenceModel: RemoteCall {
    public typealias Reply = Empty
    public static let name = "trainer.loadReferenceModel"
    public var directory: String
    public init(directory: String) { self.directory = directory }
}

/// Per-token log-probabilities of `batches` under the trainer's current weights (or its reference
/// model), with the entropy when asked: flat [batch·sequence] per batch, t == 0 entries 0.
public struct ComputeLogProbs: RemoteCall {
    public struct Output: Codable, Sendable, Equatable {
        public var logProbs: [Float]
        public var entropy: [Float]?
    }
    public typealias Reply = [Output]
    public static let name = "trainer.computeLogProbs"
    public var batches: [TokenBatch]
    public var reference: Bool
    public var entropy: Bool
    public init(batches: [TokenBatch], reference: Bool = false, entropy: Bool = false) {
        self.batches = batches
        self.reference = reference
        self.entropy = entropy
    }
}

/// One micro-batch of the policy loss: sequences (prompt + completion) and their per-token inputs.
public struct PolicyMicroBatch: Sendable, Codable, Equatable {
    public var batch: TokenBatch
    public var inputs: PolicyInputs
    public init(batch: TokenBatch, inputs: PolicyInputs) {
        self.batch = batch
        self.inputs = inputs
    }
}

/// One optimizer step of the clipped policy-gradient loss on this rank's micro-batches (its shard of
/// the mini-batch); gradients are summed across the data-parallel group. Every rank must get the call.
public struct PolicyStep: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var stats: StepStats
        public var policy: PolicyStatistics
    }
    public static let name = "trainer.policyStep"
    public var microBatches: [PolicyMicroBatch]
    public var clipLow: Float
    public var clipHigh: Float
    public var klCoefficient: Float
    public var entropy: Bool
    public init(microBatches: [PolicyMicroBatch], clipLow: Float, clipHigh: Float, klCoefficient: Float, entropy: Bool) {
        self.microBatches = microBatches
        self.clipLow = clipLow
        self.clipHigh = clipHigh
        self.klCoefficient = klCoefficient
        self.entropy = entropy
    }
}

/// The RL half of a trainer actor: the frozen reference model. Calls run one at a time (the mailbox).
final class RLBox: @unchecked Sendable {
    var referenceWeights: TrainerWeights?
    var referenceModel: TrainingModel?

    func loadReference(_ call: LoadReferenceModel, training: TrainingBox, weights: WeightsBox) throws -> Empty {
        let session = try training.session(weights)
        let w = try TrainerWeights(directory: call.directory, device: session.weights.buffer.device)
        guard w.buffer.layout.fingerprint == session.weights.buffer.layout.fingerprint else {
            throw TrainingError("the reference model \(call.directory) has other parameters than the policy")
        }
        // Forward only: the gradient views are never written (log-probs run no backward).
        referenceModel = try TrainingModel(config: w.config, weights: w.buffer.tensors, gradients: session.gradientViews,
                                           backend: session.ops)
        referenceWeights = w
        return Empty()
    }

    func logProbs(_ call: ComputeLogProbs, training: TrainingBox, weights: WeightsBox) throws -> ComputeLogProbs.Reply {
        let session = try training.session(weights)
        let model: TrainingModel
        if call.reference {
            guard let referenceModel else { throw TrainingError("the trainer has no reference model (call LoadReferenceModel first)") }
            model = referenceModel
        } else {
            model = session.model
        }
        return try call.batches.map { batch in
            let (lp, entropy) = try model.logProbs(batch, entropy: call.entropy)
            return .init(logProbs: lp, entropy: entropy)
        }
    }

    func step(_ call: PolicyStep, training: TrainingBox, weights: WeightsBox) throws -> PolicyStep.Reply {
        let session = try training.session(weights)
        let objectives = call.microBatches.map {
            PolicyObjective(inputs: $0.inputs, clipLow: call.clipLow, clipHigh: call.clipHigh,
                            klCoefficient: call.klCoefficient, wantsEntropy: call.entropy)
        }
        do {
            let stats = try session.step(microBatches: zip(call.microBatches, objectives).map { ($0.batch, $1 as any TokenObjective) })
            return .init(stats: stats, policy: objectives.reduce(PolicyStatistics()) { $0 + $1.statistics })
        } catch {
            training.abortAllReduce(error)
            throw error
        }
    }
}

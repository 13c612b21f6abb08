// Placeholder of the contract (train-cpu owns this file); replaced by their version on merge.
import Compute
import Models

public final class TrainingModel: @unchecked Sendable {
    struct NotYet: Error, CustomStringConvertible { var description: String { "TrainingModel is not merged yet" } }
    public init(config: ModelConfig, weights: [String: Tensor], gradients: [String: Tensor],
                backend: any TrainingOps, recomputeActivations: Bool = false, logitChunkRows: Int = 1024) throws {
        throw NotYet()
    }
    public func forwardBackward(_ batch: TokenBatch, objective: any TokenObjective) throws -> Double { throw NotYet() }
    public func logProbs(_ batch: TokenBatch, entropy: Bool) throws -> (logProbs: [Float], entropy: [Float]?) { throw NotYet() }
}

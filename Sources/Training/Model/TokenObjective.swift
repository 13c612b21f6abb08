// Placeholder of the contract (train-cpu owns this file); replaced by their version on merge.

/// A loss defined on the log-probabilities of the batch's tokens.
public protocol TokenObjective: AnyObject {
    func evaluate(tokens: [Int], logProbs: [Float], entropy: [Float]?) throws -> (loss: Double, logProbGradient: [Float])
    var wantsEntropy: Bool { get }
}

/// Mean next-token cross-entropy over the tokens whose weight is non-zero.
public final class CrossEntropyObjective: TokenObjective {
    public let weights: [Float]
    public init(weights: [Float]) { self.weights = weights }
    public var wantsEntropy: Bool { false }
    public func evaluate(tokens: [Int], logProbs: [Float], entropy: [Float]?) throws -> (loss: Double, logProbGradient: [Float]) {
        var loss = 0.0
        var grad = [Float](repeating: 0, count: tokens.count)
        for (i, t) in tokens.enumerated() {
            loss -= Double(weights[t]) * Double(logProbs[i])
            grad[i] = -weights[t]
        }
        return (loss, grad)
    }
}

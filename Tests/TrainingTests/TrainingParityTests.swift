import Compute
import Foundation
import Models
import Testing
import Training

/// The definition of correct for training: the loss and every parameter's gradient equal PyTorch's
/// (transformers with labels=input_ids, f32) for the three architectures.
@Suite struct TrainingParityTests {
    static let models = ["opt-tiny", "llama-tiny", "qwen2-tiny"]

    struct Run {
        var loss: Double
        var gradients: [String: [Float]]
    }

    func golden(_ model: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: Fixtures.path("\(model)/golden.safetensors"))
    }

    func batch(_ model: String) throws -> TokenBatch {
        let ids = try golden(model).tensor("input_ids")
        return TokenBatch(ids: ids.integers().map { Int32($0) }, batch: ids.shape[0], sequence: ids.shape[1])
    }

    func trainer(_ model: String, recompute: Bool = false, chunk: Int = 1024) throws -> (TrainingModel, ParameterTable) {
        let (config, weights) = try ModelLoader.load(directory: Fixtures.path(model))
        let table = ParameterTable(config: config)
        var gradients: [String: Tensor] = [:]
        for spec in table.specs { gradients[spec.name] = try Tensor.zeros(spec.shape) }
        let trainer = try TrainingModel(config: config, weights: weights, gradients: gradients, backend: CPUBackend(),
                                        recomputeActivations: recompute, logitChunkRows: chunk)
        return (trainer, table)
    }

    func run(_ model: String, recompute: Bool = false, chunk: Int = 1024) throws -> Run {
        let (trainer, table) = try self.trainer(model, recompute: recompute, chunk: chunk)
        let b = try batch(model)
        let loss = try trainer.forwardBackward(b, objective: CrossEntropyObjective.mean(batch: b))
        var gradients: [String: [Float]] = [:]
        for name in table.names { gradients[name] = trainer.gradients[name]!.floats() }
        return Run(loss: loss, gradients: gradients)
    }

    @Test(arguments: models)
    func lossAndGradientsMatchTransformers(model: String) throws {
        let g = try golden(model)
        let r = try run(model)
        let expectedLoss = Double(try g.tensor("loss").floats()[0])
        #expect(abs(r.loss - expectedLoss) <= 1e-5, "loss \(r.loss) vs \(expectedLoss)")
        let stored = g.tensorNames.filter { $0.hasPrefix("grad.") }
        #expect(stored.count == r.gradients.count, "golden has \(stored.count) gradients, the model \(r.gradients.count)")
        for name in stored {
            let parameter = String(name.dropFirst("grad.".count))
            let expected = try g.tensor(name).floats()
            let got = try #require(r.gradients[parameter], "no gradient for \(parameter)")
            let scale = expected.map(abs).max() ?? 0
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= 1e-4 * scale + 1e-7, "\(parameter): max |Δ| \(worst), max |golden| \(scale)")
        }
    }

    @Test(arguments: models)
    func logProbsAreLogSoftmaxOfGoldenLogits(model: String) throws {
        let (trainer, _) = try self.trainer(model, chunk: 5)
        let b = try batch(model)
        let (logProbs, entropy) = try trainer.logProbs(b, entropy: true)
        let logits = try golden(model).tensor("logits").floats()
        let v = trainer.config.vocabSize
        var worst: Float = 0, worstEntropy: Float = 0
        for i in 0..<b.count {
            let t = i % b.sequence
            if t == 0 {
                #expect(logProbs[i] == 0 && entropy![i] == 0)
                continue
            }
            let row = logits[(i - 1) * v..<i * v].map(Double.init)
            let m = row.max()!, lse = m + log(row.reduce(0) { $0 + exp($1 - m) })
            worst = max(worst, abs(logProbs[i] - Float(row[Int(b.ids[i])] - lse)))
            let h = -row.reduce(0) { $0 + exp($1 - lse) * ($1 - lse) }
            worstEntropy = max(worstEntropy, abs(entropy![i] - Float(h)))
        }
        #expect(worst <= 1e-4, "max |Δ log p| = \(worst)")
        #expect(worstEntropy <= 1e-4, "max |Δ entropy| = \(worstEntropy)")
    }

    @Test(arguments: models)
    func recomputingActivationsIsBitExact(model: String) throws {
        let kept = try run(model), recomputed = try run(model, recompute: true)
        #expect(kept.loss == recomputed.loss)
        for (name, g) in kept.gradients { #expect(g == recomputed.gradients[name]!, "\(name) differs") }
    }

    @Test(arguments: models)
    func logitChunkSizeDoesNotChangeResults(model: String) throws {
        let reference = try run(model)
        for chunk in [1, 7, 23] {
            let r = try run(model, chunk: chunk)
            #expect(abs(r.loss - reference.loss) <= 1e-6, "chunk \(chunk): loss \(r.loss) vs \(reference.loss)")
            for (name, g) in reference.gradients {
                let worst = zip(g, r.gradients[name]!).map { abs($0 - $1) }.max() ?? 0
                #expect(worst <= 1e-6, "chunk \(chunk): \(name) max |Δ| \(worst)")
            }
        }
    }

    /// Gradients accumulate: two micro-batches of half weight give one full step's gradients.
    @Test func gradientsAccumulateAcrossCalls() throws {
        let full = try run("llama-tiny")
        let (trainer, table) = try self.trainer("llama-tiny")
        let b = try batch("llama-tiny")
        let half = CrossEntropyObjective(weights: CrossEntropyObjective.mean(batch: b).weights.map { $0 / 2 })
        let loss = try trainer.forwardBackward(b, objective: half) + trainer.forwardBackward(b, objective: half)
        #expect(abs(loss - full.loss) <= 1e-6)
        for name in table.names {
            let worst = zip(trainer.gradients[name]!.floats(), full.gradients[name]!).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-6, "\(name) max |Δ| \(worst)")
        }
    }

    /// A loss mask: only the weighted tokens contribute, and a fully masked batch leaves gradients zero.
    @Test func maskedTokensContributeNothing() throws {
        let (trainer, table) = try self.trainer("opt-tiny", chunk: 8)
        let b = try batch("opt-tiny")
        let (logProbs, _) = try trainer.logProbs(b, entropy: false)
        var weights = [Float](repeating: 0, count: b.count)
        for i in [5, 6, 30, 47] { weights[i] = 0.25 }
        let loss = try trainer.forwardBackward(b, objective: CrossEntropyObjective(weights: weights))
        let expected = -[5, 6, 30, 47].reduce(0.0) { $0 + 0.25 * Double(logProbs[$1]) }
        #expect(abs(loss - expected) <= 1e-5)
        let (fresh, _) = try self.trainer("opt-tiny")
        _ = try fresh.forwardBackward(b, objective: CrossEntropyObjective(weights: [Float](repeating: 0, count: b.count)))
        for name in table.names { #expect(fresh.gradients[name]!.floats().allSatisfy { $0 == 0 }, "\(name) moved") }
    }

    /// An objective that asks for entropy gets the same values `logProbs(entropy: true)` returns, and
    /// sees every predicted token exactly once across chunks.
    @Test func objectivesGetEntropyAndEveryTokenOnce() throws {
        final class Recorder: TokenObjective {
            var seen: [Int: (Float, Float)] = [:]
            var wantsEntropy: Bool { true }
            func evaluate(tokens: [Int], logProbs: [Float], entropy: [Float]?) throws -> (loss: Double, logProbGradient: [Float]) {
                for (i, t) in tokens.enumerated() {
                    precondition(seen[t] == nil)
                    seen[t] = (logProbs[i], entropy![i])
                }
                return (0, [Float](repeating: 0, count: tokens.count))
            }
        }
        let (trainer, _) = try self.trainer("llama-tiny", chunk: 9)
        let b = try batch("llama-tiny")
        let recorder = Recorder()
        _ = try trainer.forwardBackward(b, objective: recorder)
        let (logProbs, entropy) = try trainer.logProbs(b, entropy: true)
        #expect(Set(recorder.seen.keys) == Set((0..<b.count).filter { $0 % b.sequence != 0 }))
        for (t, (lp, h)) in recorder.seen {
            #expect(lp == logProbs[t] && h == entropy![t])
        }
    }

    @Test func badBatchesAreOneLineErrors() throws {
        let (trainer, _) = try self.trainer("qwen2-tiny")
        var ids = [Int32](repeating: 3, count: 2 * 6)
        ids[1 * 6 + 4] = 512
        let error = #expect(throws: ModelError.self) {
            _ = try trainer.logProbs(TokenBatch(ids: ids, batch: 2, sequence: 6), entropy: false)
        }
        #expect(error?.message.contains("row 1, column 4") == true, "\(String(describing: error))")
        let long = TokenBatch(ids: [Int32](repeating: 3, count: 129), batch: 1, sequence: 129)
        #expect(throws: ModelError.self) { _ = try trainer.forwardBackward(long, objective: CrossEntropyObjective.mean(batch: long)) }
    }
}

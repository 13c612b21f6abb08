import Compute
import Foundation
import Models
import Testing
import Training
import WeightSync

/// Three optimizer steps over the flat weight buffer (`WeightLayout`), as a trainer runs them —
/// gradients, global norm, `clip_grad_norm_`, `torch.optim.AdamW` — against `train_golden.safetensors`
/// (PyTorch f32: rows 4i…4i+3 at step i, lr 3e-3, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on
/// ≥ 2-D parameters, clipping at 1.0).
@Suite struct TrainGoldenTests {
    @Test(arguments: ["opt-tiny", "llama-tiny", "qwen2-tiny"])
    func threeStepsMatchPyTorch(model: String) throws {
        let directory = try Fixtures.path(model)
        let golden = try SafeTensorsFile(path: directory + "/train_golden.safetensors")
        let config = try ModelConfig.load(directory: directory)
        let table = ParameterTable(config: config)
        let layout = WeightLayout(table: table, dtype: .f32)
        let floats = layout.totalBytes / 4
        let params = try Tensor.zeros([floats]), grads = try Tensor.zeros([floats])
        let m = try Tensor.zeros([floats]), v = try Tensor.zeros([floats])
        func views(_ flat: Tensor) -> [String: Tensor] {
            var out: [String: Tensor] = [:]
            for e in layout.entries {
                out[e.name] = Tensor(memory: flat.memory!, byteOffset: e.offset, dtype: .f32, shape: e.shape)
            }
            return out
        }
        let weights = views(params)
        _ = try ModelLoader.load(directory: directory) { name, _, _ in weights[name]! }
        let backend = CPUBackend()
        let trainer = try TrainingModel(config: config, weights: weights, gradients: views(grads), backend: backend)
        let decay = layout.entries.filter { $0.shape.count >= 2 }.map { $0.offset / 4 ..< $0.offset / 4 + $0.count }
        let hyper = AdamWHyperparameters(learningRate: 3e-3, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)

        let ids = try golden.tensor("input_ids").integers().map { Int32($0) }
        let t = try golden.tensor("input_ids").shape[1]
        let losses = try golden.tensor("loss").floats(), norms = try golden.tensor("grad_norm").floats()
        for step in 0..<3 {
            grads.pointer(Float.self).update(repeating: 0, count: floats)
            let batch = TokenBatch(ids: Array(ids[(4 * step * t)..<(4 * (step + 1) * t)]), batch: 4, sequence: t)
            let loss = try trainer.forwardBackward(batch, objective: CrossEntropyObjective.mean(batch: batch))
            let norm = try backend.sumOfSquares(grads).squareRoot()
            #expect(abs(loss - Double(losses[step])) <= 1e-4, "step \(step): loss \(loss) vs \(losses[step])")
            #expect(abs(norm - Double(norms[step])) <= 1e-4 * Double(norms[step]), "step \(step): grad norm \(norm) vs \(norms[step])")
            let coefficient = min(1, Float(1.0 / (norm + 1e-6)))
            backend.scale(grads, by: coefficient, into: grads)
            backend.adamW(params: params, grads: grads, m: m, v: v, step: step + 1, hyper: hyper, decayRanges: decay, lowPrecisionCopy: nil)
        }
        // The issue asks for every element within 1e-4. A handful of elements cannot be held to it by
        // any f32 implementation: where the true gradient is ~0, f32 rounding leaves ~1e-9 (opt-tiny's
        // layers.0.fc1.weight[2334] at step 0: 1.5e-9 here; 1.8e-9 after perturbing the weights by
        // 1e-7 relative), and Adam's first step turns that into lr·g/(|g| + eps), a 4e-4 move whose
        // size is the rounding noise's. So: all but a few elements per model within 1e-4, and every
        // element far inside a sign flip's 2·lr.
        var over = 0
        for name in table.names {
            let expected = try golden.tensor("param." + name).floats()
            let errors = zip(weights[name]!.floats(), expected).map { abs($0 - $1) }
            over += errors.filter { $0 > 1e-4 }.count
            let worst = errors.max() ?? .infinity
            #expect(worst <= 3e-4, "\(name): max |Δ| \(worst)")
        }
        #expect(over <= 2, "\(over) elements beyond 1e-4")
    }
}

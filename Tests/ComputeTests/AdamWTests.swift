import Compute
import Foundation
import Testing

/// The fused AdamW against `torch.optim.AdamW`'s single-tensor update written out element by element.
@Suite struct AdamWTests {
    let backend = CPUBackend()

    /// PyTorch's op order, scalars formed in f64 and applied in f32.
    func reference(_ p: inout [Float], _ g: [Float], _ m: inout [Float], _ v: inout [Float], step: Int,
                   _ hyper: AdamWHyperparameters, decay: (Int) -> Bool) {
        let lr = Double(hyper.learningRate), b1 = Double(hyper.beta1), b2 = Double(hyper.beta2)
        let stepSize = Float(lr / (1 - pow(b1, Double(step))))
        let root = Float((1 - pow(b2, Double(step))).squareRoot())
        for i in 0..<p.count {
            if decay(i) { p[i] *= Float(1 - lr * Double(hyper.weightDecay)) }
            m[i] = m[i] + Float(1 - b1) * (g[i] - m[i])
            v[i] = v[i] * hyper.beta2 + Float(1 - b2) * g[i] * g[i]
            let denom = v[i].squareRoot() / root + hyper.epsilon
            p[i] = p[i] + -stepSize * (m[i] / denom)
        }
    }

    @Test func threeStepsMatchTorchsUpdate() throws {
        let n = 70_001
        var rng = SplitMix64(seed: 51)
        var p = rng.floats(n), m = [Float](repeating: 0, count: n), v = [Float](repeating: 0, count: n)
        let hyper = AdamWHyperparameters(learningRate: 3e-3, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        let ranges = [10..<20_000, 30_000..<30_017, 50_000..<n]
        let pt = tensor(p, [n]), mt = try Tensor.zeros([n]), vt = try Tensor.zeros([n])
        let copy = try Tensor.zeros([n], dtype: .bf16)
        for step in 1...3 {
            let g = rng.floats(n)
            backend.adamW(params: pt, grads: tensor(g, [n]), m: mt, v: vt, step: step, hyper: hyper, decayRanges: ranges,
                          lowPrecisionCopy: copy)
            reference(&p, g, &m, &v, step: step, hyper) { i in ranges.contains { $0.contains(i) } }
        }
        let got = pt.floats()
        let worst = zip(got, p).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-7, "max |Δp| = \(worst)")
        #expect(zip(mt.floats(), m).allSatisfy { abs($0 - $1) <= 1e-7 })
        #expect(copy.floats() == got.map { BFloat16($0).float })
    }
}

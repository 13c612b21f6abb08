import Compute
import Foundation
import Testing

/// Norm backward against central differences of an f64 forward; parameter gradients accumulate.
@Suite struct NormBackwardTests {
    let backend = CPUBackend()
    let rows = 5, width = 21, eps: Float = 1e-5

    func layerNorm(_ x: [Double], _ w: [Double], _ b: [Double]) -> [Double] {
        var y = [Double](repeating: 0, count: x.count)
        for r in 0..<rows {
            let row = x[r * width..<(r + 1) * width]
            let mean = row.reduce(0, +) / Double(width)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(width)
            for c in 0..<width { y[r * width + c] = (x[r * width + c] - mean) / (variance + Double(eps)).squareRoot() * w[c] + b[c] }
        }
        return y
    }

    func rmsNorm(_ x: [Double], _ w: [Double]) -> [Double] {
        var y = [Double](repeating: 0, count: x.count)
        for r in 0..<rows {
            let meanSquare = x[r * width..<(r + 1) * width].reduce(0) { $0 + $1 * $1 } / Double(width)
            for c in 0..<width { y[r * width + c] = x[r * width + c] / (meanSquare + Double(eps)).squareRoot() * w[c] }
        }
        return y
    }

    @Test func layerNormGradients() throws {
        var rng = SplitMix64(seed: 11)
        let x = rng.floats(rows * width, in: -2...2), w = rng.floats(width), b = rng.floats(width), dy = rng.floats(rows * width)
        let dW0 = rng.floats(width), dB0 = rng.floats(width)
        let dx = try Tensor.zeros([rows, width]), dW = tensor(dW0, [width]), dB = tensor(dB0, [width])
        backend.layerNormBackward(tensor(x, [rows, width]), weight: tensor(w, [width]), eps: eps, outputGradient: tensor(dy, [rows, width]),
                                  into: dx, weightGradient: dW, biasGradient: dB)
        let xd = x.doubles, wd = w.doubles, bd = b.doubles, r = dy.doubles
        let gx = numericalGradient(xd, weights: r) { layerNorm($0, wd, bd) }
        let gw = numericalGradient(wd, weights: r) { layerNorm(xd, $0, bd) }
        let gb = numericalGradient(bd, weights: r) { layerNorm(xd, wd, $0) }
        #expect(maxScaledError(dx.floats(), gx) < 1e-4)
        #expect(maxScaledError(dW.floats(), zip(gw, dW0).map { $0 + Double($1) }) < 1e-4)
        #expect(maxScaledError(dB.floats(), zip(gb, dB0).map { $0 + Double($1) }) < 1e-4)
    }

    @Test func rmsNormGradients() throws {
        var rng = SplitMix64(seed: 12)
        let x = rng.floats(rows * width, in: -2...2), w = rng.floats(width), dy = rng.floats(rows * width), dW0 = rng.floats(width)
        let dx = try Tensor.zeros([rows, width]), dW = tensor(dW0, [width])
        backend.rmsNormBackward(tensor(x, [rows, width]), weight: tensor(w, [width]), eps: eps, outputGradient: tensor(dy, [rows, width]),
                                into: dx, weightGradient: dW)
        let xd = x.doubles, wd = w.doubles, r = dy.doubles
        #expect(maxScaledError(dx.floats(), numericalGradient(xd, weights: r) { rmsNorm($0, wd) }) < 1e-4)
        let gw = numericalGradient(wd, weights: r) { rmsNorm(xd, $0) }
        #expect(maxScaledError(dW.floats(), zip(gw, dW0).map { $0 + Double($1) }) < 1e-4)
    }

    /// The parameter gradients of many rows (several chunks over threads) equal a serial f64 sum.
    @Test func parameterGradientsOverManyRows() throws {
        let rows = 3000, width = 40
        var rng = SplitMix64(seed: 13)
        let x = rng.floats(rows * width), w = rng.floats(width), dy = rng.floats(rows * width)
        let dx = try Tensor.zeros([rows, width]), dW = try Tensor.zeros([width]), dB = try Tensor.zeros([width])
        backend.layerNormBackward(tensor(x, [rows, width]), weight: tensor(w, [width]), eps: eps, outputGradient: tensor(dy, [rows, width]),
                                  into: dx, weightGradient: dW, biasGradient: dB)
        var expectedB = [Double](repeating: 0, count: width)
        for r in 0..<rows { for c in 0..<width { expectedB[c] += Double(dy[r * width + c]) } }
        #expect(maxScaledError(dB.floats(), expectedB) < 1e-5)
    }
}

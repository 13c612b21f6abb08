import Compute
import Testing

@Suite("CPU norms")
struct NormTests {
    let backend = CPUBackend()

    @Test("layer norm against double precision", arguments: [DType.f32, .bf16, .f16])
    func layerNorm(weightType: DType) {
        for (rows, width) in [(1, 1), (3, 13), (17, 768), (40, 1000)] {
            var random = SplitMix64(seed: UInt64(rows * 31 + width))
            let values = random.floats(rows * width, in: -3...5)
            let x = tensor(values, [rows, width])
            let w = tensor(random.floats(width, in: 0.5...1.5), [width], weightType)
            let b = tensor(random.floats(width, in: -0.2...0.2), [width], weightType)
            let y = try! backend.zeros([rows, width], dtype: .f32)
            let eps: Float = 1e-5
            backend.layerNorm(x, weight: w, bias: b, eps: eps, into: y)

            let ws = w.floats(), bs = b.floats()
            var reference = [Double](), scale = [Double]()
            for r in 0..<rows {
                let row = values[r * width ..< (r + 1) * width].map(Double.init)
                let mean = row.reduce(0, +) / Double(width)
                let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(width)
                let rstd = 1 / (variance + Double(eps)).squareRoot()
                for (i, v) in row.enumerated() {
                    let scaled = (v - mean) * rstd * Double(ws[i])
                    reference.append(scaled + Double(bs[i]))
                    scale.append(abs(scaled) + abs(Double(bs[i])))
                }
            }
            // Relative to the magnitude of the terms: y can cancel to near zero.
            let error = zip(y.floats(), zip(reference, scale)).map { abs(Double($0) - $1.0) / ($1.1 + 1e-30) }.max()!
            #expect(error < 1e-5, "rows \(rows) width \(width) \(weightType): \(error)")
        }
    }

    @Test("RMS norm against double precision, in place", arguments: [DType.f32, .bf16])
    func rmsNorm(weightType: DType) {
        for (rows, width) in [(1, 5), (3, 64), (20, 896)] {
            var random = SplitMix64(seed: UInt64(rows + width))
            let values = random.floats(rows * width, in: -4...4)
            let x = tensor(values, [rows, width])
            let w = tensor(random.floats(width, in: 0.5...1.5), [width], weightType)
            let eps: Float = 1e-6
            backend.rmsNorm(x, weight: w, eps: eps, into: x)

            let ws = w.floats()
            var reference = [Double]()
            for r in 0..<rows {
                let row = values[r * width ..< (r + 1) * width].map(Double.init)
                let rstd = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(width) + Double(eps)).squareRoot()
                reference += row.enumerated().map { (i, v) in v * rstd * Double(ws[i]) }
            }
            let error = maxRelativeError(x.floats(), reference, floor: 1e-3)
            #expect(error < 1e-5, "rows \(rows) width \(width) \(weightType): \(error)")
        }
    }
}

import Compute
import Foundation
import Testing

@Suite("CPU softmax")
struct SoftmaxTests {
    let backend = CPUBackend()

    static func reference(_ x: [Float], rows: Int, width: Int, log: Bool) -> [Double] {
        var out = [Double]()
        for r in 0..<rows {
            let row = x[r * width ..< (r + 1) * width].map(Double.init)
            let m = row.max()!
            let sum = row.reduce(0) { $0 + Foundation.exp($1 - m) }
            out += row.map { log ? $0 - m - Foundation.log(sum) : Foundation.exp($0 - m) / sum }
        }
        return out
    }

    @Test("softmax and log-softmax, row by row",
          arguments: [(1, 1), (3, 5), (2, 8), (4, 50), (3, 1000), (5, 10_000)])
    func rows(rows: Int, width: Int) {
        var random = SplitMix64(seed: UInt64(rows * 1_000_003 + width))
        // Large logits: only a max-subtracted softmax survives them in f32.
        let values = random.floats(rows * width, in: -300...300)
        let x = tensor(values, [rows, width])
        let y = try! backend.zeros([rows, width], dtype: .f32)

        backend.softmax(x, into: y)
        let probabilities = Self.reference(values, rows: rows, width: width, log: false)
        // Probabilities below f32's normal range (e^-600) underflow to 0; the others are relatively exact.
        var absolute = 0.0, relative = 0.0
        for (got, want) in zip(y.floats(), probabilities) {
            let error = abs(Double(got) - want)
            absolute = max(absolute, error)
            if want > 1e-30 { relative = max(relative, error / want) }
        }
        #expect(absolute < 1e-6)
        #expect(relative < 1e-5)

        backend.logSoftmax(x, into: y)
        let logs = Self.reference(values, rows: rows, width: width, log: true)
        // x − logsumexp(x) in f32 is exact to about an ulp of the inputs' magnitude.
        let magnitude = values.map { abs(Double($0)) }.max()!
        let logError = zip(y.floats(), logs).map { abs(Double($0) - $1) }.max() ?? 0
        #expect(logError < 1e-6 * magnitude)
    }

    @Test("softmax of moderate logits has relative precision in every element")
    func relativePrecision() {
        var random = SplitMix64(seed: 3)
        let values = random.floats(4 * 777, in: -20...20)
        let x = tensor(values, [4, 777])
        backend.softmax(x, into: x)  // in place
        let reference = Self.reference(values, rows: 4, width: 777, log: false)
        #expect(maxRelativeError(x.floats(), reference, floor: 0) < 1e-5)
    }
}

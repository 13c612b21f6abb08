import Compute
import Testing

@Suite("CPU linear")
struct LinearTests {
    let backend = CPUBackend()

    /// y = x·Wᵀ + b in double, with W read as stored (after rounding to its dtype). Also returns
    /// Σ|x·w| per output, the scale against which f32 accumulation error is judged.
    static func reference(x: [Float], w: [Float], b: [Float]?, n: Int, k: Int, o: Int) -> (y: [Double], scale: [Double]) {
        var y = [Double](repeating: 0, count: n * o), scale = y
        for r in 0..<n {
            for j in 0..<o {
                var s = Double(b?[j] ?? 0), a = abs(s)
                for i in 0..<k {
                    let t = Double(x[r * k + i]) * Double(w[j * k + i])
                    s += t
                    a += abs(t)
                }
                y[r * o + j] = s
                scale[r * o + j] = a
            }
        }
        return (y, scale)
    }

    func check(n: Int, k: Int, o: Int, dtype: DType, bias: Bool, seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let x = tensor(random.floats(n * k), [n, k])
        let w = tensor(random.floats(o * k), [o, k], dtype)
        let b = bias ? tensor(random.floats(o), [o]) : nil
        let y = try! backend.zeros([n, o], dtype: .f32)
        backend.linear(x, weight: w, bias: b, into: y)
        let ref = Self.reference(x: x.floats(), w: w.floats(), b: b?.floats(), n: n, k: k, o: o)
        let got = y.floats()
        var worst = 0.0
        for i in 0..<got.count { worst = max(worst, abs(Double(got[i]) - ref.y[i]) / (ref.scale[i] + 1e-30)) }
        #expect(worst < 1e-5, "N=\(n) K=\(k) O=\(o) \(dtype) bias=\(bias): error \(worst) of Σ|x·w|")
    }

    @Test("odd shapes, all weight dtypes, with and without bias",
          arguments: [DType.f32, .bf16, .f16])
    func oddShapes(dtype: DType) {
        let shapes = [(1, 1, 1), (1, 13, 5), (1, 37, 9), (1, 64, 8), (2, 24, 7), (3, 17, 7), (4, 8, 3),
                      (5, 33, 10), (17, 50, 11), (16, 31, 4), (3, 1030, 6)]
        for (index, (n, k, o)) in shapes.enumerated() {
            check(n: n, k: k, o: o, dtype: dtype, bias: index % 2 == 0, seed: UInt64(index + 1))
            check(n: n, k: k, o: o, dtype: dtype, bias: index % 2 == 1, seed: UInt64(index + 100))
        }
    }

    @Test("shapes large enough to run on several threads", arguments: [DType.f32, .bf16, .f16])
    func parallelShapes(dtype: DType) {
        check(n: 1, k: 300, o: 502, dtype: dtype, bias: true, seed: 7)      // matrix-vector, many tasks
        check(n: 20, k: 160, o: 203, dtype: dtype, bias: true, seed: 8)     // tiled, O not a multiple of 3
        check(n: 9, k: 2100, o: 50, dtype: dtype, bias: false, seed: 9)     // three K blocks
    }

    @Test("K = 0 gives the bias")
    func emptyInner() {
        let x = try! backend.zeros([3, 0], dtype: .f32)
        let w = try! backend.zeros([4, 0], dtype: .bf16)
        let y = Tensor([Float](repeating: 9, count: 12), shape: [3, 4])
        backend.linear(x, weight: w, bias: Tensor([1, 2, 3, 4], shape: [4]), into: y)
        #expect(y.floats() == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4])
    }

    @Test("row-strided views: a column slice of the weight in place, strided x and y")
    func stridedViews() {
        var random = SplitMix64(seed: 42)
        let n = 5, kFull = 40, k0 = 8, k = 24, o = 10
        for dtype in [DType.f32, .bf16] {
            let full = tensor(random.floats(o * kFull), [o, kFull], dtype)
            let slice = Tensor(memory: full.memory!, byteOffset: k0 * dtype.byteSize, dtype: dtype,
                               shape: [o, k], strides: [kFull, 1])
            let xWide = tensor(random.floats(n * 30), [n, 30])
            let x = Tensor(memory: xWide.memory!, byteOffset: 4 * 4, dtype: .f32, shape: [n, k], strides: [30, 1])
            let yWide = try! backend.zeros([n, 16], dtype: .f32)
            let y = Tensor(memory: yWide.memory!, byteOffset: 2 * 4, dtype: .f32, shape: [n, o], strides: [16, 1])
            backend.linear(x, weight: slice, bias: nil, into: y)

            let w = full.floats(), xs = xWide.floats(), ys = yWide.floats()
            for r in 0..<n {
                for j in 0..<o {
                    var s = 0.0, a = 0.0
                    for i in 0..<k {
                        let t = Double(xs[r * 30 + 4 + i]) * Double(w[j * kFull + k0 + i])
                        s += t
                        a += abs(t)
                    }
                    #expect(abs(Double(ys[r * 16 + 2 + j]) - s) <= 1e-5 * a, "\(dtype) row \(r) output \(j)")
                }
                // Columns of y outside the view are untouched.
                #expect(ys[r * 16] == 0 && ys[r * 16 + 1] == 0 && ys[r * 16 + 12] == 0)
            }
        }
    }
}

import Compute
import Testing

/// dX = dY·W and dW += dYᵀ·X (db += Σ dY) against naive f64 sums, over shapes that hit the tiled
/// kernel's edges, the one-row path, and bf16/f16 weights.
@Suite struct LinearBackwardTests {
    let backend = CPUBackend()

    @Test(arguments: [(1, 5, 7), (37, 29, 53), (64, 48, 96), (5, 130, 1030)], [DType.f32, .bf16, .f16])
    func inputGradient(shape: (Int, Int, Int), dtype: DType) throws {
        let (n, o, k) = shape
        var rng = SplitMix64(seed: UInt64(n * 1000 + o))
        let dy = rng.floats(n * o), w = tensor(rng.floats(o * k), [o, k], dtype), start = rng.floats(n * k)
        let wf = w.floats()
        for accumulate in [false, true] {
            let dx = tensor(start, [n, k])
            backend.linearBackwardInput(tensor(dy, [n, o]), weight: w, into: dx, accumulate: accumulate)
            var expected = [Double](repeating: 0, count: n * k)
            for r in 0..<n {
                for c in 0..<k {
                    var s = accumulate ? Double(start[r * k + c]) : 0
                    for j in 0..<o { s += Double(dy[r * o + j]) * Double(wf[j * k + c]) }
                    expected[r * k + c] = s
                }
            }
            #expect(maxScaledError(dx.floats(), expected) < 1e-6, "accumulate \(accumulate)")
        }
    }

    @Test(arguments: [(1, 5, 7), (37, 29, 53), (300, 48, 20)])
    func weightAndBiasGradients(shape: (Int, Int, Int)) throws {
        let (n, o, k) = shape
        var rng = SplitMix64(seed: UInt64(n * 7 + k))
        let dy = rng.floats(n * o), x = rng.floats(n * k), w0 = rng.floats(o * k), b0 = rng.floats(o)
        let dW = tensor(w0, [o, k]), db = tensor(b0, [o])
        backend.linearBackwardWeight(tensor(dy, [n, o]), input: tensor(x, [n, k]), weightGradient: dW, biasGradient: db)
        var expectedW = [Double](repeating: 0, count: o * k), expectedB = [Double](repeating: 0, count: o)
        for j in 0..<o {
            var sb = Double(b0[j])
            for r in 0..<n { sb += Double(dy[r * o + j]) }
            expectedB[j] = sb
            for c in 0..<k {
                var s = Double(w0[j * k + c])
                for r in 0..<n { s += Double(dy[r * o + j]) * Double(x[r * k + c]) }
                expectedW[j * k + c] = s
            }
        }
        #expect(maxScaledError(dW.floats(), expectedW) < 1e-6)
        #expect(maxScaledError(db.floats(), expectedB) < 1e-6)
    }

    /// Register-tiled f32 blocks, edges, a row stride wider than the row, and widened bf16.
    @Test(arguments: [(8, 8), (37, 70), (100, 33), (1, 9)], [DType.f32, .bf16])
    func transpose(shape: (Int, Int), dtype: DType) throws {
        let (rows, columns) = shape, stride = columns + 3
        var rng = SplitMix64(seed: UInt64(rows * 31 + columns))
        let source = tensor(rng.floats(rows * stride), [rows, stride], dtype)
        let values = source.floats()
        let out = UnsafeMutablePointer<Float>.allocate(capacity: rows * columns)
        defer { out.deallocate() }
        CPUKernels.transpose(UnsafeRawPointer(source.rawPointer), dtype, rows: rows, columns: columns, sourceRowStride: stride, into: out)
        var mismatches = 0
        for r in 0..<rows {
            for c in 0..<columns where out[c * rows + r] != values[r * stride + c] { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test func embeddingBackwardSumsRepeatedIds() throws {
        var rng = SplitMix64(seed: 3)
        let ids: [Int32] = [3, 1, 3, 0, 3, 1, 4]
        let width = 19, vocabulary = 6
        let dy = rng.floats(ids.count * width), start = rng.floats(vocabulary * width)
        let table = tensor(start, [vocabulary, width])
        backend.embeddingBackward(ids: ids, tensor(dy, [ids.count, width]), into: table)
        var expected = start.doubles
        for (n, id) in ids.enumerated() {
            for c in 0..<width { expected[Int(id) * width + c] += Double(dy[n * width + c]) }
        }
        #expect(maxScaledError(table.floats(), expected) < 1e-6)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Causal self-attention over whole sequences for training, grouped-query, with the flash-attention
/// backward: the forward saves each softmax row's log-sum-exp `L`, and the backward recomputes the
/// probabilities from it, `P = exp(S − L)`, instead of keeping the [T, T] matrices:
///
///     dV += Pᵀ·dO,   dP = dO·Vᵀ,   dS = P ∘ (dP − rowsum(dO ∘ O)),   dQ = scale·dS·K,   dK += scale·dSᵀ·Q
///
/// Scores are exact dot products in f32, exponentiated with `VectorMath.exp`.
extension CPUKernels {
    /// Query positions per forward task.
    static let attentionQueryBlock = 16

    /// q, out: [batch·sequence, heads, headDim]; k, v: [batch·sequence, kvHeads, headDim];
    /// logSumExp: [batch·sequence, heads]. Position i of a sequence attends to 0...i of it.
    public static func causalAttention(
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, batch: Int, sequence: Int,
        heads: Int, kvHeads: Int, headDim d: Int, scale: Float,
        into out: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>
    ) {
        precondition(kvHeads > 0 && heads % kvHeads == 0, "causalAttention: \(heads) heads over \(kvHeads) kv heads")
        guard batch > 0, sequence > 0, d > 0 else { return }
        let group = heads / kvHeads, t = sequence
        let blocks = (t + attentionQueryBlock - 1) / attentionQueryBlock
        let lanes = Parallel.width
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: lanes * t)
        defer { scratch.deallocate() }
        // Blocks of late positions cost the most; hand them out first.
        Parallel.forEachWithLane(count: batch * kvHeads * blocks) { task, lane in
            let block = blocks - 1 - task % blocks, g = (task / blocks) % kvHeads, b = task / (blocks * kvHeads)
            let scores = scratch + lane * t
            for i in block * attentionQueryBlock ..< min(t, (block + 1) * attentionQueryBlock) {
                let token = b * t + i
                for h in g * group ..< (g + 1) * group {
                    let qi = q + (token * heads + h) * d
                    let kv0 = (b * t * kvHeads + g) * d, kvStride = kvHeads * d
                    rowScores(qi, k + kv0, kvStride, i + 1, d, scale, into: scores)
                    let m = VectorMath.maximum(scores, i + 1)
                    let sum = VectorMath.exponentialSum(scores, i + 1, minus: m, into: scores)
                    let o = out + (token * heads + h) * d
                    o.initialize(repeating: 0, count: d)
                    weightedRows(scores, v + kv0, kvStride, i + 1, d, into: o)
                    VectorMath.scale(o, d, by: 1 / sum)
                    logSumExp[token * heads + h] = m + log(sum)
                }
            }
        }
    }

    /// Backward of `causalAttention`: dq, dk, dv overwritten. One task per (sequence, kv head) owns
    /// that kv head's dk/dv rows and the dq rows of its query heads, so nothing races and the sums
    /// run in a fixed order.
    public static func causalAttentionBackward(
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafePointer<Float>,
        logSumExp: UnsafePointer<Float>, outputGradient dOut: UnsafePointer<Float>, batch: Int, sequence: Int,
        heads: Int, kvHeads: Int, headDim d: Int, scale: Float,
        queryGradient dq: UnsafeMutablePointer<Float>, keyGradient dk: UnsafeMutablePointer<Float>, valueGradient dv: UnsafeMutablePointer<Float>
    ) {
        precondition(kvHeads > 0 && heads % kvHeads == 0, "causalAttentionBackward: \(heads) heads over \(kvHeads) kv heads")
        guard batch > 0, sequence > 0, d > 0 else { return }
        let group = heads / kvHeads, t = sequence
        let lanes = Parallel.width
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: lanes * 2 * t)
        defer { scratch.deallocate() }
        Parallel.forEachWithLane(count: batch * kvHeads) { task, lane in
            let g = task % kvHeads, b = task / kvHeads
            let p = scratch + lane * 2 * t, dp = p + t
            let kv0 = (b * t * kvHeads + g) * d, kvStride = kvHeads * d
            for j in 0..<t {
                (dk + kv0 + j * kvStride).initialize(repeating: 0, count: d)
                (dv + kv0 + j * kvStride).initialize(repeating: 0, count: d)
            }
            for h in g * group ..< (g + 1) * group {
                for i in 0..<t {
                    let token = b * t + i, row = (token * heads + h) * d, n = i + 1
                    let qi = q + row, doi = dOut + row
                    rowScores(qi, k + kv0, kvStride, n, d, scale, into: p)
                    _ = VectorMath.exponentialSum(p, n, minus: logSumExp[token * heads + h], into: p)
                    rowScores(doi, v + kv0, kvStride, n, d, 1, into: dp)
                    let delta = dotProduct(doi, out + row, d)
                    // dS = P ∘ (dP − δ), scaled once here for both dQ and dK.
                    scaledDifference(p, dp, delta, scale, n)
                    let dqi = dq + row
                    dqi.initialize(repeating: 0, count: d)
                    weightedRows(dp, k + kv0, kvStride, n, d, into: dqi)
                    for j in 0..<n {
                        let kvRow = kv0 + j * kvStride
                        axpy(dp[j], qi, dk + kvRow, d)
                        axpy(p[j], doi, dv + kvRow, d)
                    }
                }
            }
        }
    }

    /// `scores[j] = factor · x·rows[j]` for j < n, rows `stride` apart.
    static func rowScores(
        _ x: UnsafePointer<Float>, _ rows: UnsafePointer<Float>, _ stride: Int, _ n: Int, _ d: Int, _ factor: Float,
        into scores: UnsafeMutablePointer<Float>
    ) {
        var j = 0
        while j + 4 <= n {
            let r = rows + j * stride
            let s = dotFourRows(x, r, r + stride, r + 2 * stride, r + 3 * stride, d) * factor
            UnsafeMutableRawPointer(scores + j).storeBytes(of: s, as: SIMD4<Float>.self)
            j += 4
        }
        while j < n {
            scores[j] = dotProduct(x, rows + j * stride, d) * factor
            j += 1
        }
    }

    /// `acc += Σ_j w[j] · rows[j]` for j < n, rows `stride` apart, four rows per pass over acc.
    static func weightedRows(
        _ w: UnsafePointer<Float>, _ rows: UnsafePointer<Float>, _ stride: Int, _ n: Int, _ d: Int, into acc: UnsafeMutablePointer<Float>
    ) {
        var j = 0
        while j + 4 <= n {
            let r = rows + j * stride
            let w0 = SIMD8<Float>(repeating: w[j]), w1 = SIMD8<Float>(repeating: w[j + 1])
            let w2 = SIMD8<Float>(repeating: w[j + 2]), w3 = SIMD8<Float>(repeating: w[j + 3])
            let r1 = r + stride, r2 = r + 2 * stride, r3 = r + 3 * stride
            var c = 0
            while c + 8 <= d {
                var a = load(acc, c)
                a.addProduct(w0, load(r, c))
                a.addProduct(w1, load(r1, c))
                a.addProduct(w2, load(r2, c))
                a.addProduct(w3, load(r3, c))
                store(a, acc, c)
                c += 8
            }
            while c < d {
                acc[c] += w[j] * r[c] + w[j + 1] * r1[c] + w[j + 2] * r2[c] + w[j + 3] * r3[c]
                c += 1
            }
            j += 4
        }
        while j < n {
            axpy(w[j], rows + j * stride, acc, d)
            j += 1
        }
    }

    /// `p[j] = factor · p[j] · (dp[j] − delta)`, written into dp; p keeps the probabilities.
    static func scaledDifference(_ p: UnsafeMutablePointer<Float>, _ dp: UnsafeMutablePointer<Float>, _ delta: Float, _ factor: Float, _ n: Int) {
        let dv = SIMD8<Float>(repeating: delta)
        var j = 0
        while j + 8 <= n {
            store(load(p, j) * (load(dp, j) - dv) * factor, dp, j)
            j += 8
        }
        while j < n {
            dp[j] = p[j] * (dp[j] - delta) * factor
            j += 1
        }
    }
}

/// `y += a · x` over n elements.
@inline(always) private func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let av = SIMD8<Float>(repeating: a)
    var c = 0
    while c + 8 <= n {
        store(load(y, c).addingProduct(av, load(x, c)), y, c)
        c += 8
    }
    while c < n {
        y[c] += a * x[c]
        c += 1
    }
}

@inline(always) private func dotProduct(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
    var a = SIMD8<Float>()
    var c = 0
    while c + 8 <= n {
        a.addProduct(load(x, c), load(y, c))
        c += 8
    }
    var s = horizontalSums(a, SIMD8(), SIMD8(), SIMD8())[0]
    while c < n {
        s += x[c] * y[c]
        c += 1
    }
    return s
}

@inline(always) private func dotFourRows(
    _ x: UnsafePointer<Float>, _ r0: UnsafePointer<Float>, _ r1: UnsafePointer<Float>, _ r2: UnsafePointer<Float>,
    _ r3: UnsafePointer<Float>, _ n: Int
) -> SIMD4<Float> {
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
    var c = 0
    while c + 8 <= n {
        let xv = load(x, c)
        a0.addProduct(xv, load(r0, c))
        a1.addProduct(xv, load(r1, c))
        a2.addProduct(xv, load(r2, c))
        a3.addProduct(xv, load(r3, c))
        c += 8
    }
    var s = horizontalSums(a0, a1, a2, a3)
    while c < n {
        s.addProduct(SIMD4(repeating: x[c]), SIMD4(r0[c], r1[c], r2[c], r3[c]))
        c += 1
    }
    return s
}

@inline(always) private func load(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(always) private func load(_ p: UnsafeMutablePointer<Float>, _ i: Int) -> SIMD8<Float> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(always) private func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
    UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// `(a0.sum(), a1.sum(), a2.sum(), a3.sum())` with a shuffle tree.
@inline(always)
private func horizontalSums(_ a0: SIMD8<Float>, _ a1: SIMD8<Float>, _ a2: SIMD8<Float>, _ a3: SIMD8<Float>) -> SIMD4<Float> {
    let u0 = SIMD8(lowHalf: a0.lowHalf + a0.highHalf, highHalf: a1.lowHalf + a1.highHalf)
    let u1 = SIMD8(lowHalf: a2.lowHalf + a2.highHalf, highHalf: a3.lowHalf + a3.highHalf)
    let v = SIMD8(lowHalf: u0.evenHalf, highHalf: u1.evenHalf) + SIMD8(lowHalf: u0.oddHalf, highHalf: u1.oddHalf)
    return v.evenHalf + v.oddHalf
}

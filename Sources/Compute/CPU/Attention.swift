/// Causal attention over a paged KV cache, grouped-query.
///
/// One task per (token, range of kv heads): the query heads of those kv heads are processed
/// together, position by position, so that the cache is read as whole contiguous row pieces (a
/// head-by-head walk would stride through it a row apart and starve the prefetchers). Scores are
/// exact dot products, scaled, max-subtracted and exponentiated in f32 (kept in per-thread scratch),
/// then the values are accumulated four positions at a time.
extension CPUKernels {
    /// `out[n, h, :] = Σ_p softmax_p(scale · q[n, h]·k[p]) · v[p]` over the positions
    /// `0...layout.positionOfToken[n]` of token n's sequence, reading kv head `h / (heads / kvHeads)`.
    /// Caches are `[slots, kvHeads, headDim]`; q and out are `[N, heads, headDim]`.
    /// A layout that points outside the cache or its block tables is a bug in the caller and stops
    /// the process.
    public static func attention(
        q: UnsafePointer<Float>, kCache: UnsafePointer<Float>, vCache: UnsafePointer<Float>, slots: Int,
        heads: Int, kvHeads: Int, headDim: Int, layout: AttentionLayout, scale: Float,
        into out: UnsafeMutablePointer<Float>
    ) {
        let tokens = layout.positionOfToken.count
        precondition(layout.sequenceOfToken.count == tokens, "attention layout: \(layout.sequenceOfToken.count) sequence ids for \(tokens) tokens")
        precondition(kvHeads > 0 && heads % kvHeads == 0, "attention: \(heads) heads over \(kvHeads) kv heads")
        guard tokens > 0, headDim > 0 else { return }
        let blockSize = layout.blockSize
        precondition(blockSize > 0, "attention layout: block size \(blockSize)")

        // Block tables flattened, checked once; positions checked against them.
        var tableStart = [Int](), flat = [Int32]()
        for table in layout.blockTables {
            tableStart.append(flat.count)
            for block in table {
                precondition(block >= 0 && (Int(block) + 1) * blockSize <= slots, "attention layout: block \(block) outside a cache of \(slots) slots")
                flat.append(block)
            }
        }
        tableStart.append(flat.count)
        var longest = 0
        for n in 0..<tokens {
            let s = Int(layout.sequenceOfToken[n]), p = Int(layout.positionOfToken[n])
            precondition(s >= 0 && s < layout.blockTables.count, "attention layout: token \(n) in sequence \(s) of \(layout.blockTables.count)")
            precondition(p >= 0 && p / blockSize < tableStart[s + 1] - tableStart[s],
                         "attention layout: position \(p) of sequence \(s) beyond its \(tableStart[s + 1] - tableStart[s]) blocks")
            longest = max(longest, p + 1)
        }

        let group = heads / kvHeads
        let work = tokens * heads * longest * headDim
        let lanes = work < 1 << 15 ? 1 : Parallel.width
        // Split a token's kv heads only as far as needed for two tasks per thread.
        let chunksPerToken = min(kvHeads, max(1, (2 * lanes + tokens - 1) / tokens))
        let kvPerTask = (kvHeads + chunksPerToken - 1) / chunksPerToken
        let chunks = (kvHeads + kvPerTask - 1) / kvPerTask
        let headsPerTask = kvPerTask * group
        // Per lane: row offsets of the positions, scores, value accumulators, inverse sums.
        let scoresOffset = longest * 8
        let accumulatorOffset = scoresOffset + headsPerTask * longest * 4
        let inverseOffset = accumulatorOffset + headsPerTask * headDim * 4
        let perLane = (inverseOffset + headsPerTask * 4 + 63) & ~63
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(64, lanes * perLane), alignment: 64)
        defer { scratch.deallocate() }
        let rowStride = kvHeads * headDim

        tableStart.withUnsafeBufferPointer { tableStart in
            flat.withUnsafeBufferPointer { flat in
                layout.sequenceOfToken.withUnsafeBufferPointer { sequenceOfToken in
                    layout.positionOfToken.withUnsafeBufferPointer { positionOfToken in
                        let task = { (t: Int, lane: Int) in
                            let n = t / chunks, g0 = (t % chunks) * kvPerTask
                            let g1 = min(kvHeads, g0 + kvPerTask)
                            let s = Int(sequenceOfToken[n]), length = Int(positionOfToken[n]) + 1
                            let laneBase = scratch + lane * perLane
                            let offsets = laneBase.bindMemory(to: Int.self, capacity: longest)
                            let table = flat.baseAddress! + tableStart[s]
                            // Blocks and positions were checked against the cache above: wrapping arithmetic.
                            var p = 0
                            while p < length {
                                let block = p / blockSize
                                let base = Int(table[block]) &* blockSize
                                let end = min(length, (block &+ 1) &* blockSize)
                                var offset = (base &+ (p &- block &* blockSize)) &* rowStride
                                while p < end {
                                    offsets[p] = offset
                                    offset &+= rowStride
                                    p &+= 1
                                }
                            }
                            attendHeads(
                                q: q + (n * heads + g0 * group) * headDim, kCache: kCache, vCache: vCache,
                                offsets: offsets, length: length, firstKV: g0, kvCount: g1 - g0, group: group,
                                headDim: headDim, scale: scale,
                                scores: (laneBase + scoresOffset).bindMemory(to: Float.self, capacity: headsPerTask * longest),
                                scoreStride: longest,
                                accumulators: (laneBase + accumulatorOffset).bindMemory(to: Float.self, capacity: headsPerTask * headDim),
                                inverseSums: (laneBase + inverseOffset).bindMemory(to: Float.self, capacity: headsPerTask),
                                out: out + (n * heads + g0 * group) * headDim)
                        }
                        if lanes == 1 {
                            for t in 0..<tokens * chunks { task(t, 0) }
                        } else {
                            Parallel.forEachWithLane(count: tokens * chunks, task)
                        }
                    }
                }
            }
        }
    }

    /// Attention of the query heads of kv heads `firstKV ..< firstKV + kvCount` of one token: `q` and
    /// `out` point at the first of those query heads (consecutive, `headDim` apart); `offsets[p]` is
    /// the start of position p's cache row.
    static func attendHeads(
        q: UnsafePointer<Float>, kCache: UnsafePointer<Float>, vCache: UnsafePointer<Float>,
        offsets: UnsafePointer<Int>, length: Int, firstKV: Int, kvCount: Int, group: Int, headDim: Int, scale: Float,
        scores: UnsafeMutablePointer<Float>, scoreStride: Int, accumulators: UnsafeMutablePointer<Float>,
        inverseSums: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>
    ) {
        // Offsets index the caller's cache and scratch (checked by `attention`): wrapping arithmetic.
        let headCount = kvCount &* group
        let first = firstKV &* headDim
        // Scores, four positions at a time, all heads of the task per position.
        var p = 0
        while p &+ 4 <= length {
            let k0 = kCache + (offsets[p] &+ first), k1 = kCache + (offsets[p &+ 1] &+ first)
            let k2 = kCache + (offsets[p &+ 2] &+ first), k3 = kCache + (offsets[p &+ 3] &+ first)
            for h in 0..<headCount {
                let ko = (h / group) &* headDim
                let d = dot4(q + h &* headDim, k0 + ko, k1 + ko, k2 + ko, k3 + ko, headDim)
                UnsafeMutableRawPointer(scores + (h &* scoreStride &+ p)).storeBytes(of: d * scale, as: SIMD4<Float>.self)
            }
            p &+= 4
        }
        while p < length {
            let k = kCache + (offsets[p] &+ first)
            for h in 0..<headCount {
                let kh = k + (h / group) &* headDim
                scores[h &* scoreStride &+ p] = dot4(q + h &* headDim, kh, kh, kh, kh, headDim)[0] * scale
            }
            p &+= 1
        }
        for h in 0..<headCount {
            let row = scores + h &* scoreStride
            let m = VectorMath.maximum(row, length)
            inverseSums[h] = 1 / VectorMath.exponentialSum(row, length, minus: m, into: row)
        }

        // Weighted values, four positions at a time, into accumulators that stay in L1.
        accumulators.initialize(repeating: 0, count: headCount &* headDim)
        p = 0
        while p &+ 4 <= length {
            let v0 = vCache + (offsets[p] &+ first), v1 = vCache + (offsets[p &+ 1] &+ first)
            let v2 = vCache + (offsets[p &+ 2] &+ first), v3 = vCache + (offsets[p &+ 3] &+ first)
            for h in 0..<headCount {
                let vo = (h / group) &* headDim
                let w = UnsafeRawPointer(scores + (h &* scoreStride &+ p)).loadUnaligned(as: SIMD4<Float>.self)
                accumulateFour(accumulators + h &* headDim, v0 + vo, v1 + vo, v2 + vo, v3 + vo, w, headDim)
            }
            p &+= 4
        }
        while p < length {
            let v = vCache + (offsets[p] &+ first)
            for h in 0..<headCount {
                let vh = v + (h / group) &* headDim
                accumulateOne(accumulators + h &* headDim, vh, scores[h &* scoreStride &+ p], headDim)
            }
            p &+= 1
        }
        for h in 0..<headCount {
            let acc = accumulators + h &* headDim, o = out + h &* headDim, inverse = inverseSums[h]
            var d = 0
            while d &+ 8 <= headDim {
                storeVector(loadVector(acc, d) * inverse, o, d)
                d &+= 8
            }
            while d < headDim {
                o[d] = acc[d] * inverse
                d &+= 1
            }
        }
    }

    /// `acc += w·v` over n elements.
    @inline(always)
    static func accumulateOne(_ acc: UnsafeMutablePointer<Float>, _ v: UnsafePointer<Float>, _ w: Float, _ n: Int) {
        let wv = SIMD8<Float>(repeating: w)
        var d = 0
        while d &+ 8 <= n {
            storeVector(loadVector(acc, d).addingProduct(wv, loadVector(v, d)), acc, d)
            d &+= 8
        }
        while d < n {
            acc[d] += w * v[d]
            d &+= 1
        }
    }

    /// `acc += w[0]·v0 + w[1]·v1 + w[2]·v2 + w[3]·v3` over n elements.
    @inline(always)
    static func accumulateFour(
        _ acc: UnsafeMutablePointer<Float>, _ v0: UnsafePointer<Float>, _ v1: UnsafePointer<Float>,
        _ v2: UnsafePointer<Float>, _ v3: UnsafePointer<Float>, _ w: SIMD4<Float>, _ n: Int
    ) {
        let w0 = SIMD8<Float>(repeating: w[0]), w1 = SIMD8<Float>(repeating: w[1])
        let w2 = SIMD8<Float>(repeating: w[2]), w3 = SIMD8<Float>(repeating: w[3])
        var d = 0
        while d &+ 8 <= n {
            var a = loadVector(acc, d)
            a.addProduct(w0, loadVector(v0, d))
            a.addProduct(w1, loadVector(v1, d))
            a.addProduct(w2, loadVector(v2, d))
            a.addProduct(w3, loadVector(v3, d))
            storeVector(a, acc, d)
            d &+= 8
        }
        while d < n {
            acc[d] += w[0] * v0[d] + w[1] * v1[d] + w[2] * v2[d] + w[3] * v3[d]
            d &+= 1
        }
    }

    /// Dot products of `q` with four rows of `n` elements.
    @inline(always)
    static func dot4(
        _ q: UnsafePointer<Float>, _ k0: UnsafePointer<Float>, _ k1: UnsafePointer<Float>,
        _ k2: UnsafePointer<Float>, _ k3: UnsafePointer<Float>, _ n: Int
    ) -> SIMD4<Float> {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var i = 0
        while i &+ 8 <= n {
            let x = loadVector(q, i)
            a0.addProduct(x, loadVector(k0, i))
            a1.addProduct(x, loadVector(k1, i))
            a2.addProduct(x, loadVector(k2, i))
            a3.addProduct(x, loadVector(k3, i))
            i &+= 8
        }
        var s = horizontalSums(a0, a1, a2, a3)
        while i < n {
            s.addProduct(SIMD4(repeating: q[i]), SIMD4(k0[i], k1[i], k2[i], k3[i]))
            i &+= 1
        }
        return s
    }
}

// File-local helpers: debug builds compile files separately, and a helper in another file would
// be a call in the inner loop.

@inline(always) private func loadVector(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(always) private func storeVector(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
    UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// `(a0.sum(), a1.sum(), a2.sum(), a3.sum())` with a shuffle tree instead of four serial sums.
@inline(always)
private func horizontalSums(_ a0: SIMD8<Float>, _ a1: SIMD8<Float>, _ a2: SIMD8<Float>, _ a3: SIMD8<Float>) -> SIMD4<Float> {
    let u0 = SIMD8(lowHalf: a0.lowHalf + a0.highHalf, highHalf: a1.lowHalf + a1.highHalf)
    let u1 = SIMD8(lowHalf: a2.lowHalf + a2.highHalf, highHalf: a3.lowHalf + a3.highHalf)
    let v = SIMD8(lowHalf: u0.evenHalf, highHalf: u1.evenHalf) + SIMD8(lowHalf: u0.oddHalf, highHalf: u1.oddHalf)
    return v.evenHalf + v.oddHalf
}

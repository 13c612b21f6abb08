/// Causal attention over a paged KV cache, grouped-query.
///
/// One task per (token, kv head): the query heads that share the kv head are processed together, so
/// each cached key and value row is read once per group. Scores are exact dot products scaled,
/// max-subtracted and exponentiated in f32 (two passes over the scores, which are kept in per-thread
/// scratch), then the values are accumulated 32 lanes at a time.
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
        let tasks = tokens * kvHeads
        let work = tokens * heads * longest * headDim
        let lanes = work < 1 << 15 ? 1 : Parallel.width
        // Per lane: row offsets of the positions, then `group` rows of scores.
        let perLane = longest * (1 + group)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(1, lanes * perLane) * 8, alignment: 64)
        defer { scratch.deallocate() }

        tableStart.withUnsafeBufferPointer { tableStart in
            flat.withUnsafeBufferPointer { flat in
                layout.sequenceOfToken.withUnsafeBufferPointer { sequenceOfToken in
                    layout.positionOfToken.withUnsafeBufferPointer { positionOfToken in
                        let task = { (t: Int, lane: Int) in
                            let n = t / kvHeads, g = t % kvHeads
                            let s = Int(sequenceOfToken[n]), length = Int(positionOfToken[n]) + 1
                            let laneBase = scratch + lane * perLane * 8
                            let offsets = laneBase.bindMemory(to: Int.self, capacity: longest)
                            let scores = (laneBase + longest * 8).bindMemory(to: Float.self, capacity: group * longest)
                            let rowStride = kvHeads * headDim
                            let table = flat.baseAddress! + tableStart[s]
                            var p = 0
                            while p < length {
                                let base = Int(table[p / blockSize]) * blockSize
                                let end = min(length, (p / blockSize + 1) * blockSize)
                                while p < end {
                                    offsets[p] = (base + p % blockSize) * rowStride + g * headDim
                                    p += 1
                                }
                            }
                            for j in 0..<group {
                                let h = g * group + j
                                attendOneHead(
                                    q: q + (n * heads + h) * headDim, kCache: kCache, vCache: vCache,
                                    offsets: offsets, length: length, headDim: headDim, scale: scale,
                                    scores: scores + j * longest, out: out + (n * heads + h) * headDim)
                            }
                        }
                        if lanes == 1 {
                            for t in 0..<tasks { task(t, 0) }
                        } else {
                            Parallel.forEachWithLane(count: tasks, task)
                        }
                    }
                }
            }
        }
    }

    static func attendOneHead(
        q: UnsafePointer<Float>, kCache: UnsafePointer<Float>, vCache: UnsafePointer<Float>,
        offsets: UnsafePointer<Int>, length: Int, headDim: Int, scale: Float,
        scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>
    ) {
        // Scores, four keys at a time.
        var p = 0
        while p &+ 4 <= length {
            let d = dot4(q, kCache + offsets[p], kCache + offsets[p &+ 1], kCache + offsets[p &+ 2], kCache + offsets[p &+ 3], headDim)
            UnsafeMutableRawPointer(scores + p).storeBytes(of: d * scale, as: SIMD4<Float>.self)
            p &+= 4
        }
        while p < length {
            let k = kCache + offsets[p]
            scores[p] = dot4(q, k, k, k, k, headDim)[0] * scale
            p &+= 1
        }
        let m = VectorMath.maximum(scores, length)
        let inverseSum = 1 / VectorMath.exponentialSum(scores, length, minus: m, into: scores)

        // out = Σ_p scores[p] · v[p], 32 lanes of the head at a time, then 8, then single lanes.
        var d = 0
        while d &+ 32 <= headDim {
            var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
            for p in 0..<length {
                let v = vCache + offsets[p] + d
                let w = SIMD8<Float>(repeating: scores[p])
                a0.addProduct(w, loadVector(v, 0))
                a1.addProduct(w, loadVector(v, 8))
                a2.addProduct(w, loadVector(v, 16))
                a3.addProduct(w, loadVector(v, 24))
            }
            storeVector(a0 * inverseSum, out, d)
            storeVector(a1 * inverseSum, out, d &+ 8)
            storeVector(a2 * inverseSum, out, d &+ 16)
            storeVector(a3 * inverseSum, out, d &+ 24)
            d &+= 32
        }
        while d &+ 8 <= headDim {
            var a = SIMD8<Float>()
            for p in 0..<length {
                a.addProduct(SIMD8<Float>(repeating: scores[p]), loadVector(vCache + offsets[p] + d, 0))
            }
            storeVector(a * inverseSum, out, d)
            d &+= 8
        }
        while d < headDim {
            var a: Float = 0
            for p in 0..<length { a += scores[p] * vCache[offsets[p] + d] }
            out[d] = a * inverseSum
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

/// Causal attention over a paged KV cache that reads each cached K/V row once for all the query heads
/// sharing it (grouped-query attention), with 16-byte loads, and that splits long contexts over blocks
/// (flash-decoding) when a step has too few (token, KV head) pairs to fill the GPU.
///
/// The kernel of ``AttentionKernels`` gives each (token, query head) a block whose warps read one row per
/// lane-wide load and reduce each dot product across all 32 lanes: at decode batch sizes that is shuffle-
/// bound, and with GQA every query head of a group reads the same rows again. Here a block owns a
/// (token, KV head, chunk of ≤ GMAX query heads, split of the positions) and each cache row is read by a
/// small group of lanes:
/// - a lane holds 8 dims of the head (one 16-byte load of a 16-bit row, two of an f32 one), so a row of
///   64 / 128 / 256 dims takes 8 / 16 / 32 lanes and a warp reads 4 / 2 / 1 rows at once;
/// - each row's scores for the chunk's heads are reduced across those lanes only (3–5 shuffles);
/// - each lane group keeps an online softmax (running max, sum, weighted values) per head;
/// - at the end the block merges its lane groups in shared memory. With one split it writes the output;
///   with several it writes an unnormalised partial (values, max, sum) per split, and the last split
///   block of its (token, head chunk) to finish — counted by an atomic — combines them (one launch).
///
/// The split count depends only on the step's shape (never on positions), so a step captured as a CUDA
/// graph replays with the same grid; a split past the end of a short sequence is empty and weighs 0.
/// Needs head dims that are multiples of 8 (≤ 256), 16-byte aligned caches, and an output of the
/// cache's type; other steps run ``AttentionKernels``.
enum GroupedAttentionKernels {
    static let kernels = CUDAKernelSource(family: "grouped-attention", source: source, functions: functions)

    static let headDimClasses = [64, 128, 256]
    /// Query heads per block: a group larger than the class is split into chunks of it.
    static let headGroupClasses = [1, 4, 8]
    static let warps = 4
    static let maxSplits = 16

    static let functions = CUDAKernelLibrarySources.floatTypes.flatMap { c in
        headDimClasses.flatMap { d in headGroupClasses.map { g in "paged_attention_grouped_\(c.name)_d\(d)_g\(g)" } }
    }

    /// Whether a step can run here: see the type's notes.
    static func applies(headDim: Int, cache: DType, output: DType, addresses: [UInt64]) -> Bool {
        headDim % 8 == 0 && headDim <= headDimClasses.last! && cache == output && addresses.allSatisfy { $0 % 16 == 0 }
    }

    struct Launch: Equatable {
        var name: String
        /// Query heads per block (the class) and blocks per KV head.
        var headsPerBlock: Int
        var headChunks: Int
        var splits: Int
    }

    /// The kernel and grid for a step of `tokens` tokens: as many splits as it takes for about two blocks
    /// per SM, up to ``maxSplits``; one when the (token, KV head, head chunk) blocks already do that.
    static func launch(tokens: Int, heads: Int, kvHeads: Int, headDim: Int, cache: DType, multiprocessors: Int) -> Launch {
        let group = heads / kvHeads
        let perBlock = headGroupClasses.first { group <= $0 } ?? headGroupClasses.last!
        let chunks = (group + perBlock - 1) / perBlock
        let dims = headDimClasses.first { headDim <= $0 }!
        let blocks = tokens * kvHeads * chunks
        let wanted = 2 * multiprocessors
        let splits = blocks >= wanted ? 1 : min(maxSplits, (wanted + blocks - 1) / blocks)
        return Launch(name: "paged_attention_grouped_\(CUDABackend.kernelSuffix(cache))_d\(dims)_g\(perBlock)",
                      headsPerBlock: perBlock, headChunks: chunks, splits: splits)
    }

    static var source: String {
        var out = "#define GROUPED_ATTENTION_WARPS \(warps)\n"
        out += #"""
// q: [tokens, heads, headDim] f32; out: the same shape in C; caches: [slots, kvHeads, headDim] in C;
// meta as for paged_attention. partial (splits > 1): [tokens, heads, splits, headDim + 2] f32 — the
// unnormalised values, then the max and the sum of the split.
// Grid: (tokens, kvHeads · headChunks, splits); block: 32 · GROUPED_ATTENTION_WARPS threads.
template <typename C, int D, int GMAX>
__device__ void paged_attention_grouped(const float* q, const C* kCache, const C* vCache, C* out, float* partial,
                                        int* counters, const int* meta, int tokens, int heads, int kvHeads, int headDim,
                                        int blockSize, float scale, int splits) {
    const int PER = 8, TPR = D / PER, RPW = 32 / TPR, W = GROUPED_ATTENTION_WARPS, GROUPS = W * RPW;
    __shared__ float smMax[GROUPS][GMAX], smSum[GROUPS][GMAX];
    __shared__ float smAcc[GROUPS][GMAX][D];

    int t = blockIdx.x, split = blockIdx.z;
    int group = heads / kvHeads, chunks = (group + GMAX - 1) / GMAX;
    int kvHead = blockIdx.y / chunks, chunk = blockIdx.y % chunks;
    int h0 = kvHead * group + chunk * GMAX;
    int G = min(GMAX, group - chunk * GMAX);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int row = lane / TPR, d0 = (lane % TPR) * PER;
    int rowGroup = warp * RPW + row;
    bool dims = d0 < headDim;

    int position = meta[t];
    const int* table = meta + 2 * tokens + meta[tokens + t];
    int length = position + 1;
    int per = (length + splits - 1) / splits;
    int begin = min(length, split * per), end = min(length, begin + per);

    float qv[GMAX][PER], acc[GMAX][PER], m[GMAX], l[GMAX];
#pragma unroll
    for (int g = 0; g < GMAX; g++) {
        const float* qRow = q + ((i64)t * heads + h0 + g) * headDim + d0;
#pragma unroll
        for (int j = 0; j < PER; j++) {
            qv[g][j] = g < G && dims ? qRow[j] * scale : 0.0f;
            acc[g][j] = 0.0f;
        }
        m[g] = NEG_INF;
        l[g] = 0.0f;
    }
    i64 slotStride = (i64)kvHeads * headDim, headOffset = (i64)kvHead * headDim + d0;

    // Two rows per lane group in flight; the loop bound is the same for every lane of a warp (shuffles).
    for (int base = begin + warp * RPW; base < end; base += 2 * GROUPS) {
        float k[2][PER], v[2][PER];
        bool live[2];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            int p = base + u * GROUPS + row;
            live[u] = p < end;
            if (live[u] && dims) {
                i64 slot = (i64)table[p / blockSize] * blockSize + p % blockSize;
                load8(kCache + slot * slotStride + headOffset, k[u]);
                load8(vCache + slot * slotStride + headOffset, v[u]);
            } else {
#pragma unroll
                for (int j = 0; j < PER; j++) k[u][j] = v[u][j] = 0.0f;
            }
        }
#pragma unroll
        for (int u = 0; u < 2; u++) {
#pragma unroll
            for (int g = 0; g < GMAX; g++) {
                if (g >= G) break;
                float s = 0.0f;
#pragma unroll
                for (int j = 0; j < PER; j++) s += qv[g][j] * k[u][j];
#pragma unroll
                for (int o = TPR / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                if (live[u]) {
                    float mNew = fmaxf(m[g], s);
                    float correction = expf(m[g] - mNew), e = expf(s - mNew);
                    l[g] = l[g] * correction + e;
#pragma unroll
                    for (int j = 0; j < PER; j++) acc[g][j] = acc[g][j] * correction + e * v[u][j];
                    m[g] = mNew;
                }
            }
        }
    }

#pragma unroll
    for (int g = 0; g < GMAX; g++) {
        if (g >= G) break;
        if (lane % TPR == 0) {
            smMax[rowGroup][g] = m[g];
            smSum[rowGroup][g] = l[g];
        }
        if (dims) {
#pragma unroll
            for (int j = 0; j < PER; j++) smAcc[rowGroup][g][d0 + j] = acc[g][j];
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * headDim; i += blockDim.x) {
        int g = i / headDim, d = i % headDim;
        float M = NEG_INF;
        for (int r = 0; r < GROUPS; r++) M = fmaxf(M, smMax[r][g]);
        float L = 0.0f, o = 0.0f;
        if (M != NEG_INF) {
            // A lane group that saw no position has max -inf and sum 0: weight exp(-inf) = 0.
            for (int r = 0; r < GROUPS; r++) {
                float w = expf(smMax[r][g] - M);
                L += smSum[r][g] * w;
                o += smAcc[r][g][d] * w;
            }
        }
        i64 head = (i64)t * heads + h0 + g;
        if (splits == 1) {
            out[head * headDim + d] = from_float<C>(o / L);
        } else {
            float* slot = partial + (head * splits + split) * (headDim + 2);
            slot[d] = o;
            if (d == 0) {
                slot[headDim] = M;
                slot[headDim + 1] = L;
            }
        }
    }
    if (splits == 1) return;

    // The last split block of this (token, head chunk) to finish merges the splits (no second launch).
    // It resets the counter, so counters are zero at every launch (a replayed graph reuses them).
    __shared__ int isLast;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        int* counter = counters + (i64)t * gridDim.y + blockIdx.y;
        isLast = atomicAdd(counter, 1) == splits - 1;
        if (isLast) *counter = 0;
    }
    __syncthreads();
    if (!isLast) return;
    __threadfence();
    // Split maxima and sums into shared memory (one load each, all in flight), then each split's weight.
    float* weight = &smAcc[0][0][0];  // reused: the block's own results are written out already
    for (int i = threadIdx.x; i < G * splits; i += blockDim.x) {
        int g = i / splits, sp = i % splits;
        const float* slot = partial + (((i64)t * heads + h0 + g) * splits + sp) * (headDim + 2);
        weight[2 * i] = load_cg(slot + headDim);
        weight[2 * i + 1] = load_cg(slot + headDim + 1);
    }
    __syncthreads();
    if (threadIdx.x < G) {
        int g = threadIdx.x;
        float M = NEG_INF, L = 0.0f;
        for (int sp = 0; sp < splits; sp++) M = fmaxf(M, weight[2 * (g * splits + sp)]);
        for (int sp = 0; sp < splits; sp++) {
            float m = weight[2 * (g * splits + sp)];
            L += m == NEG_INF ? 0.0f : weight[2 * (g * splits + sp) + 1] * expf(m - M);
        }
        // Split 0 always holds position 0: M is finite and L > 0.
        for (int sp = 0; sp < splits; sp++) {
            float m = weight[2 * (g * splits + sp)];
            weight[2 * G * splits + g * splits + sp] = m == NEG_INF ? 0.0f : expf(m - M) / L;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * headDim; i += blockDim.x) {
        int g = i / headDim, d = i % headDim;
        i64 head = (i64)t * heads + h0 + g;
        const float* values = partial + head * splits * (headDim + 2) + d;
        float o = 0.0f;
        for (int sp = 0; sp < splits; sp++) o += load_cg(values + sp * (headDim + 2)) * weight[2 * G * splits + g * splits + sp];
        out[head * headDim + d] = from_float<C>(o);
    }
}

"""#
        for c in CUDAKernelLibrarySources.floatTypes {
            for d in headDimClasses {
                for g in headGroupClasses {
                    out += """
                    extern "C" __global__ void __launch_bounds__(\(32 * warps)) paged_attention_grouped_\(c.name)_d\(d)_g\(g)(const float* q, const \(c.cType)* kCache, const \(c.cType)* vCache, \(c.cType)* out, float* partial, int* counters,
                                                             const int* meta, int tokens, int heads, int kvHeads, int headDim, int blockSize, float scale, int splits) {
                        paged_attention_grouped<\(c.cType), \(d), \(g)>(q, kCache, vCache, out, partial, counters, meta, tokens, heads, kvHeads, headDim, blockSize, scale, splits);
                    }

                    """
                }
            }
        }
        return out
    }
}

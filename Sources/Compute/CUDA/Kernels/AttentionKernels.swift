/// Causal attention over a paged KV cache with grouped-query heads (decode and prefill alike).
///
/// One block per (token, query head), of 4 to 16 warps (``warps(tokens:heads:)``: a decode step of a few
/// sequences has few blocks, so each takes more warps). Each warp walks its share of the cached positions
/// of the token's sequence (0...position) four at a time — the four rows' loads are issued together, so
/// a warp waits for memory once per four positions instead of once per position — with the lanes
/// splitting the head dimension (coalesced reads of a cache row) and an online softmax (running max, sum
/// and weighted values). The warps' partial results are merged at the end.
///
/// Instantiated per head-dimension class (`_d64`, `_d128`, `_d256`: 2, 4 or 8 dims per lane), per cache
/// type, and per output type (f32; `_to_bf16` / `_to_f16` write the operand of the output projection).
enum AttentionKernels {
    static let kernels = CUDAKernelSource(family: "attention", source: source, functions: functions)

    static let headDimClasses = [64, 128, 256]
    static let maxHeadDim = 256
    static let maxWarps = 16
    static let unroll = 4

    static let functions = CUDAKernelLibrarySources.floatTypes.flatMap { c in
        CUDAKernelLibrarySources.floatTypes.flatMap { o in headDimClasses.map { "paged_attention_\(c.name)\(outputSuffix(o.name))_d\($0)" } }
    }

    private static func outputSuffix(_ name: String) -> String { name == "f32" ? "" : "_to_\(name)" }

    /// The kernel for a cache of `cache` writing `output`, for heads of `headDim` (≤ 256).
    static func name(cache: DType, writing output: DType, headDim: Int) -> String {
        let dims = headDimClasses.first { headDim <= $0 } ?? maxHeadDim
        return "paged_attention_\(CUDABackend.kernelSuffix(cache))\(outputSuffix(CUDABackend.kernelSuffix(output)))_d\(dims)"
    }

    /// Warps per block: enough blocks × warps to fill the GPU (~132 SMs × 64 warps) when the step has
    /// few (token, head) pairs, 4 when it has many (prefill, large batches).
    static func warps(tokens: Int, heads: Int) -> Int {
        let blocks = tokens * heads
        return blocks >= 2048 ? 4 : blocks >= 512 ? 8 : maxWarps
    }

    static var source: String {
        var out = """
        #define ATTENTION_MAX_WARPS \(maxWarps)
        #define ATTENTION_UNROLL \(unroll)

        """
        out += #"""
// q: [tokens, heads, headDim] f32; out: the same shape in O; caches: [slots, kvHeads, headDim] in C.
// meta: positions[tokens], tableStart[tokens], then the block tables laid end to end; token t's table is
// meta + 2 * tokens + tableStart[t]. Grid: (tokens, heads); block: 32 × (4, 8 or 16) threads.
// PER: dims per lane (headDim ≤ 32 · PER).
template <typename C, typename O, int PER>
__device__ void paged_attention(const float* q, const C* kCache, const C* vCache, O* out, const int* meta,
                                int tokens, int heads, int kvHeads, int headDim, int blockSize, float scale) {
    __shared__ float warpMax[ATTENTION_MAX_WARPS], warpSum[ATTENTION_MAX_WARPS];
    __shared__ float warpAcc[ATTENTION_MAX_WARPS][32 * PER];
    const int U = ATTENTION_UNROLL;
    int t = blockIdx.x, h = blockIdx.y;
    int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int position = meta[t];
    const int* table = meta + 2 * tokens + meta[tokens + t];
    int kvHead = h / (heads / kvHeads);
    const float* qRow = q + ((i64)t * heads + h) * headDim;
    i64 slotStride = (i64)kvHeads * headDim;

    float qv[PER], acc[PER];
#pragma unroll
    for (int j = 0; j < PER; j++) {
        int d = lane + 32 * j;
        qv[j] = d < headDim ? qRow[d] * scale : 0.0f;
        acc[j] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    for (int p0 = warp * U; p0 <= position; p0 += warps * U) {
        // Issue every load of the four rows before using any.
        float k[U][PER], v[U][PER];
#pragma unroll
        for (int u = 0; u < U; u++) {
            int p = p0 + u;
            bool live = p <= position;
            i64 slot = live ? (i64)table[p / blockSize] * blockSize + p % blockSize : 0;
            const C* kRow = kCache + slot * slotStride + (i64)kvHead * headDim;
            const C* vRow = vCache + slot * slotStride + (i64)kvHead * headDim;
#pragma unroll
            for (int j = 0; j < PER; j++) {
                int d = lane + 32 * j;
                bool in = live && d < headDim;
                k[u][j] = in ? to_float(kRow[d]) : 0.0f;
                v[u][j] = in ? to_float(vRow[d]) : 0.0f;
            }
        }
        float s[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            float dot = 0.0f;
#pragma unroll
            for (int j = 0; j < PER; j++) dot += qv[j] * k[u][j];
            s[u] = dot;
        }
#pragma unroll
        for (int u = 0; u < U; u++) s[u] = warp_sum(s[u]);
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (p0 + u > position) break;
            float mNew = fmaxf(m, s[u]);
            float correction = expf(m - mNew), e = expf(s[u] - mNew);
            l = l * correction + e;
#pragma unroll
            for (int j = 0; j < PER; j++) acc[j] = acc[j] * correction + e * v[u][j];
            m = mNew;
        }
    }
    if (lane == 0) {
        warpMax[warp] = m;
        warpSum[warp] = l;
    }
#pragma unroll
    for (int j = 0; j < PER; j++) {
        int d = lane + 32 * j;
        if (d < headDim) warpAcc[warp][d] = acc[j];
    }
    __syncthreads();
    float M = NEG_INF;
    for (int w = 0; w < warps; w++) M = fmaxf(M, warpMax[w]);
    float L = 0.0f;
    for (int w = 0; w < warps; w++) L += warpSum[w] * expf(warpMax[w] - M);
    O* oRow = out + ((i64)t * heads + h) * headDim;
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
        float o = 0.0f;
        // A warp that saw no position has max -inf and sum 0: its weight is 0 (not NaN: M is finite).
        for (int w = 0; w < warps; w++) o += warpMax[w] == NEG_INF ? 0.0f : warpAcc[w][d] * expf(warpMax[w] - M);
        oRow[d] = from_float<O>(o / L);
    }
}

"""#
        for c in CUDAKernelLibrarySources.floatTypes {
            for o in CUDAKernelLibrarySources.floatTypes {
                for dims in headDimClasses {
                    out += """
                    extern "C" __global__ void paged_attention_\(c.name)\(outputSuffix(o.name))_d\(dims)(const float* q, const \(c.cType)* kCache, const \(c.cType)* vCache, \(o.cType)* out, const int* meta,
                                                             int tokens, int heads, int kvHeads, int headDim, int blockSize, float scale) {
                        paged_attention<\(c.cType), \(o.cType), \(dims / 32)>(q, kCache, vCache, out, meta, tokens, heads, kvHeads, headDim, blockSize, scale);
                    }

                    """
                }
            }
        }
        return out
    }
}

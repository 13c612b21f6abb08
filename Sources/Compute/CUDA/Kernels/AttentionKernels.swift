/// Causal attention over a paged KV cache with grouped-query heads (decode and prefill alike).
///
/// One block of `attentionWarps` warps per (token, query head). Each warp walks every
/// `attentionWarps`-th cached position of the token's sequence (0...position), the lanes of the warp
/// splitting the head dimension (coalesced reads of one cache row), keeping an online softmax
/// (running max, sum and weighted values); the warps' partial results are merged at the end.
enum AttentionKernels {
    static let kernels = CUDAKernelSource(family: "attention", source: source, functions: functions)

    static let functions = CUDAKernelLibrarySources.floatTypes.map { "paged_attention_\($0.name)" }
        + CUDAKernelLibrarySources.floatTypes.flatMap { c in ElementwiseKernels.lowPrecision.map { "paged_attention_\(c.name)_to_\($0.name)" } }

    /// The kernel for a cache of `cache` writing `output` (f32: the plain name).
    static func name(cache: DType, writing output: DType) -> String {
        "paged_attention_\(CUDABackend.kernelSuffix(cache))" + (output == .f32 ? "" : "_to_\(CUDABackend.kernelSuffix(output))")
    }
    static let attentionWarps = 4
    static let maxHeadDim = 256

    static var source: String {
        var out = """
        #define ATTENTION_WARPS \(attentionWarps)
        #define MAX_HEAD_DIM \(maxHeadDim)

        """
        out += #"""
// q, out: [tokens, heads, headDim] f32; caches: [slots, kvHeads, headDim].
// meta: positions[tokens], tableStart[tokens], then the block tables laid end to end; token t's table is
// meta + 2 * tokens + tableStart[t]. Grid: (tokens, heads); block: 32 * ATTENTION_WARPS threads.
template <typename C, typename O>
__device__ void paged_attention(const float* q, const C* kCache, const C* vCache, O* out, const int* meta,
                                int tokens, int heads, int kvHeads, int headDim, int blockSize, float scale) {
    __shared__ float warpMax[ATTENTION_WARPS], warpSum[ATTENTION_WARPS];
    __shared__ float warpAcc[ATTENTION_WARPS][MAX_HEAD_DIM];
    const int per = MAX_HEAD_DIM / 32;
    int t = blockIdx.x, h = blockIdx.y;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int position = meta[t];
    const int* table = meta + 2 * tokens + meta[tokens + t];
    int kvHead = h / (heads / kvHeads);
    const float* qRow = q + ((i64)t * heads + h) * headDim;
    i64 slotStride = (i64)kvHeads * headDim;

    float qv[per], acc[per];
    for (int j = 0; j < per; j++) {
        int d = lane + 32 * j;
        qv[j] = d < headDim ? qRow[d] * scale : 0.0f;
        acc[j] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    for (int p = warp; p <= position; p += ATTENTION_WARPS) {
        i64 slot = (i64)table[p / blockSize] * blockSize + p % blockSize;
        const C* kRow = kCache + slot * slotStride + (i64)kvHead * headDim;
        const C* vRow = vCache + slot * slotStride + (i64)kvHead * headDim;
        float s = 0.0f;
        for (int j = 0; j < per; j++) {
            int d = lane + 32 * j;
            if (d < headDim) s += qv[j] * to_float(kRow[d]);
        }
        s = warp_sum(s);
        float mNew = fmaxf(m, s);
        float correction = expf(m - mNew), e = expf(s - mNew);
        l = l * correction + e;
        for (int j = 0; j < per; j++) {
            int d = lane + 32 * j;
            if (d < headDim) acc[j] = acc[j] * correction + e * to_float(vRow[d]);
        }
        m = mNew;
    }
    if (lane == 0) {
        warpMax[warp] = m;
        warpSum[warp] = l;
    }
    for (int j = 0; j < per; j++) {
        int d = lane + 32 * j;
        if (d < headDim) warpAcc[warp][d] = acc[j];
    }
    __syncthreads();
    float M = NEG_INF;
    for (int w = 0; w < ATTENTION_WARPS; w++) M = fmaxf(M, warpMax[w]);
    float L = 0.0f;
    for (int w = 0; w < ATTENTION_WARPS; w++) L += warpSum[w] * expf(warpMax[w] - M);
    O* oRow = out + ((i64)t * heads + h) * headDim;
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < ATTENTION_WARPS; w++) o += warpAcc[w][d] * expf(warpMax[w] - M);
        oRow[d] = from_float<O>(o / L);
    }
}

"""#
        for t in CUDAKernelLibrarySources.floatTypes {
            out += """
            extern "C" __global__ void paged_attention_\(t.name)(const float* q, const \(t.cType)* kCache, const \(t.cType)* vCache, float* out, const int* meta,
                                                         int tokens, int heads, int kvHeads, int headDim, int blockSize, float scale) {
                paged_attention(q, kCache, vCache, out, meta, tokens, heads, kvHeads, headDim, blockSize, scale);
            }

            """
            for o in ElementwiseKernels.lowPrecision {
                out += """
                extern "C" __global__ void paged_attention_\(t.name)_to_\(o.name)(const float* q, const \(t.cType)* kCache, const \(t.cType)* vCache, \(o.cType)* out, const int* meta,
                                                             int tokens, int heads, int kvHeads, int headDim, int blockSize, float scale) {
                    paged_attention(q, kCache, vCache, out, meta, tokens, heads, kvHeads, headDim, blockSize, scale);
                }

                """
            }
        }
        return out
    }
}

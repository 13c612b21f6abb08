/// Causal self-attention for bf16-mixed training on tensor cores: the same ops, layouts and log-sum-exp as
/// ``TrainingAttentionKernels`` (whose `attention_backward_delta_f32` the backward still uses), with the
/// products run as `mma.sync.m16n8k16` on bf16 operands accumulating in f32 (FlashAttention-2's
/// algorithm). Sm_80 and newer; head dims ≤ 128 (instances for ≤ 64 and ≤ 128).
///
/// Precision, as PyTorch autocast's bf16 SDPA: q, k, v and dOut are read as f32 and rounded to bf16 as
/// their tiles enter shared memory; the probabilities P and dS are rounded to bf16 for the second product;
/// scores, the softmax statistics, lse, delta and every accumulator stay f32, and the outputs are f32.
///
/// Work split: a block of 4 warps owns 64 rows (queries for the forward and dQ, keys for dK and dV), a warp
/// 16 of them, its accumulators in mma fragments (registers). Tiles of the other side (64 keys for the
/// forward; 32 keys or queries for the backward, which holds two products' fragments at once) go through
/// shared memory as bf16, rows padded by 8 elements so that `ldmatrix` reads are free of bank conflicts.
/// dQ and dK/dV are separate kernels (no atomics: dK and dV sum over the group's query heads inside the
/// block), each recomputing P from lse.
///
/// Tiles are loaded with all of a thread's loads in flight before its first store (one memory latency per
/// chunk of loads, not one per load: 2.6× faster forward, 1.9× faster backward than one load at a time).
/// Copying the next tile as f32 into a shared-memory stage with `cp.async` under the current tile's
/// products, then converting, was slower on an H200 (16 × 512 tokens, 12 heads of 64: forward 0.116
/// against 0.089 ms, backward 0.318 against 0.287): more shared memory and registers per block, fewer
/// blocks per SM. Measured with `bench/probes/flash_attn_tc`.
enum TrainingAttentionTCKernels {
    static let kernels = CUDAKernelSource(family: "training_attention_tc", source: source, functions: functions)

    static let functions = variants.flatMap { variant in
        ["forward", "backward_dq", "backward_dkdv"].map { "flash_attention_tc_\($0)_\(variant.name)" }
    }

    /// Instantiations by head dimension, with the keys per dQ tile and the queries per dK/dV tile (`FATC_VARIANT`).
    static let variants: [(name: String, maxHeadDim: Int, dqKeys: Int, dkdvQueries: Int)] = [("d64", 64, 32, 32), ("d128", 128, 32, 32)]
    static let maxHeadDim = 128
    /// The compute capability the kernels need (bf16 `mma.sync`, `ldmatrix`).
    static let minimumArchitecture = 80
    /// Rows (queries or keys) a block owns: 4 warps × 16.
    static let blockRows = 64
    static let threads = 128

    /// The instantiation for `headDim` (≤ 128) and the bytes of dynamic shared memory of each kernel.
    static func variant(headDim: Int) -> (name: String, forwardSharedBytes: Int, dqSharedBytes: Int, dkdvSharedBytes: Int) {
        let variant = headDim <= 64 ? variants[0] : variants[1]
        let row = 2 * (variant.maxHeadDim + 8)  // bytes of a padded bf16 tile row
        return (variant.name, 3 * blockRows * row, (2 * blockRows + 2 * variant.dqKeys) * row,
                (2 * blockRows + 2 * variant.dkdvQueries) * row + 2 * variant.dkdvQueries * 4)
    }

    static let source = #"""
// Fragments follow the PTX ISA's mma.m16n8k16 layouts: with g = lane / 4 and c = lane % 4, a thread holds
// rows g and g + 8 of the 16-row operands and accumulators, accumulator columns 2c and 2c + 1 of each
// 8-column tile, and packs two bf16 of consecutive k in a 32-bit register (lower k in the lower half).
#define FATC_BR 64  // rows per block: 4 warps × 16
#define FATC_THREADS 128

__device__ __forceinline__ i64 fatc_row(int b, int T, int t, int heads, int h, int D) {
    return (((i64)b * T + t) * heads + h) * D;
}

// Two floats as a bf16 pair, rounded to nearest even: lo in the lower half.
__device__ __forceinline__ unsigned int fatc_pack(float lo, float hi) {
    unsigned int r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ unsigned int fatc_shared_address(const void* p) {
    unsigned int r;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
}

// Four 8×8 bf16 matrices from shared memory; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void fatc_ldmatrix(unsigned int r[4], const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(fatc_shared_address(p)) : "memory");
}
__device__ __forceinline__ void fatc_ldmatrix_trans(unsigned int r[4], const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(fatc_shared_address(p)) : "memory");
}

// The A operand (16 rows × 16 k) from a row-major tile at `p` (row stride `stride` elements).
__device__ __forceinline__ void fatc_load_a(unsigned int a[4], const unsigned short* p, int stride, int lane) {
    int i = lane >> 3, r = lane & 7;
    fatc_ldmatrix(a, p + (r + (i & 1) * 8) * stride + (i >> 1) * 8);
}
// B operands of two 8-column tiles (b[0], b[1]: columns 0–7; b[2], b[3]: 8–15) over 16 k, from a tile
// stored [column][k] (keys × dims for Q·Kᵀ) ...
__device__ __forceinline__ void fatc_load_b(unsigned int b[4], const unsigned short* p, int stride, int lane) {
    int i = lane >> 3, r = lane & 7;
    fatc_ldmatrix(b, p + ((i >> 1) * 8 + r) * stride + (i & 1) * 8);
}
// ... or stored [k][column] (keys × dims for P·V), transposed by ldmatrix.
__device__ __forceinline__ void fatc_load_b_trans(unsigned int b[4], const unsigned short* p, int stride, int lane) {
    int i = lane >> 3, r = lane & 7;
    fatc_ldmatrix_trans(b, p + ((i & 1) * 8 + r) * stride + (i >> 1) * 8);
}

// c (16 × 8, f32) += a (16 × 16, bf16) · b (16 × 8, bf16).
__device__ __forceinline__ void fatc_mma(float c[4], const unsigned int a[4], unsigned int b0, unsigned int b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two 16 × 8 accumulator tiles (16 × 16: rows × k) as the A operand of the next product.
__device__ __forceinline__ void fatc_to_a(unsigned int a[4], const float lo[4], const float hi[4]) {
    a[0] = fatc_pack(lo[0], lo[1]);
    a[1] = fatc_pack(lo[2], lo[3]);
    a[2] = fatc_pack(hi[0], hi[1]);
    a[3] = fatc_pack(hi[2], hi[3]);
}

// Rows t0 ..< t0 + R of head h of x ([batch · T, heads, D], f32) into tile[R][MAXD + 8] as bf16; rows past T
// and dims past D are zeros. For blocks of FATC_THREADS threads. The loads of a chunk are all issued before
// the first store: one memory latency per chunk, not one per load (MAXCHUNK float4 loads in flight per thread).
template <int R, int MAXD, int MAXCHUNK = 8>
__device__ __forceinline__ void fatc_load_tile(unsigned short* tile, const float* x, int b, int T, int t0,
                                               int heads, int h, int D) {
    constexpr int STRIDE = MAXD + 8, GROUPS = MAXD / 4, PER_THREAD = R * GROUPS / FATC_THREADS;
    constexpr int CHUNK = PER_THREAD < MAXCHUNK ? PER_THREAD : MAXCHUNK;
    static_assert(PER_THREAD * FATC_THREADS == R * GROUPS && PER_THREAD % CHUNK == 0, "tile not a multiple of the block");
    bool vector = (D & 3) == 0 && (((unsigned long long)x) & 15) == 0;
#pragma unroll
    for (int c0 = 0; c0 < PER_THREAD; c0 += CHUNK) {
        float4 f[CHUNK];
#pragma unroll
        for (int j = 0; j < CHUNK; j++) {
            int i = threadIdx.x + (c0 + j) * FATC_THREADS, r = i / GROUPS, d = (i % GROUPS) * 4, t = t0 + r;
            f[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (t < T && d < D) {
                const float* p = x + fatc_row(b, T, t, heads, h, D) + d;
                if (vector) {
                    f[j] = *(const float4*)p;
                } else {
                    f[j].x = p[0];
                    if (d + 1 < D) f[j].y = p[1];
                    if (d + 2 < D) f[j].z = p[2];
                    if (d + 3 < D) f[j].w = p[3];
                }
            }
        }
#pragma unroll
        for (int j = 0; j < CHUNK; j++) {
            int i = threadIdx.x + (c0 + j) * FATC_THREADS, r = i / GROUPS, d = (i % GROUPS) * 4;
            *(uint2*)(tile + r * STRIDE + d) = make_uint2(fatc_pack(f[j].x, f[j].y), fatc_pack(f[j].z, f[j].w));
        }
    }
}

// Grid: (ceil(T / 64), heads, batch); block: 128; dynamic shared memory: 3 · 64 · (MAXD + 8) bf16.
template <int MAXD>
__device__ void flash_attention_tc_forward(const float* q, const float* k, const float* v, float* out, float* lse,
                                           int T, int heads, int kvHeads, int D, float scale) {
#if __CUDA_ARCH__ >= 800
    constexpr int STRIDE = MAXD + 8, KSTEPS = MAXD / 16, DTILES = MAXD / 8;
    extern __shared__ __align__(16) unsigned short fatc_shared[];
    unsigned short* Qs = fatc_shared;
    unsigned short* Ks = Qs + FATC_BR * STRIDE;
    unsigned short* Vs = Ks + FATC_BR * STRIDE;
    int h = blockIdx.y, b = blockIdx.z, kvh = h / (heads / kvHeads);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    int q0 = (gridDim.x - 1 - blockIdx.x) * FATC_BR;  // the longest rows start first
    int lastQ = min(q0 + FATC_BR, T) - 1;
    int rowW = q0 + warp * 16, row[2] = {rowW + g, rowW + g + 8};
    const float log2Scale = scale * 1.4426950408889634f;  // scores in base-2 units: exp2 instead of exp

    fatc_load_tile<FATC_BR, MAXD>(Qs, q, b, T, q0, heads, h, D);
    __syncthreads();
    unsigned int qa[KSTEPS][4];
#pragma unroll
    for (int ks = 0; ks < KSTEPS; ks++) fatc_load_a(qa[ks], Qs + warp * 16 * STRIDE + ks * 16, STRIDE, lane);

    float o[DTILES][4], m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};  // l: this thread's columns only
#pragma unroll
    for (int n = 0; n < DTILES; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    for (int k0 = 0; k0 <= lastQ; k0 += FATC_BR) {
        __syncthreads();  // the previous tile is consumed
        fatc_load_tile<FATC_BR, MAXD>(Ks, k, b, T, k0, kvHeads, kvh, D);
        fatc_load_tile<FATC_BR, MAXD>(Vs, v, b, T, k0, kvHeads, kvh, D);
        __syncthreads();
        float s[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KSTEPS; ks++)
#pragma unroll
            for (int np = 0; np < 4; np++) {
                unsigned int kb[4];
                fatc_load_b(kb, Ks + np * 16 * STRIDE + ks * 16, STRIDE, lane);
                fatc_mma(s[2 * np], qa[ks], kb[0], kb[1]);
                fatc_mma(s[2 * np + 1], qa[ks], kb[2], kb[3]);
            }
        bool diagonal = k0 + FATC_BR - 1 > rowW;  // some key of the tile is after some row of the warp
        float tileMax[2] = {NEG_INF, NEG_INF};  // of the raw scores (scale > 0)
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int key = k0 + n * 8 + 2 * c + (j & 1);
                if (diagonal && key > row[j >> 1]) s[n][j] = NEG_INF;
                tileMax[j >> 1] = fmaxf(tileMax[j >> 1], s[n][j]);
            }
        float correction[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            tileMax[r] = fmaxf(tileMax[r], __shfl_xor_sync(0xffffffffu, tileMax[r], 1));
            tileMax[r] = fmaxf(tileMax[r], __shfl_xor_sync(0xffffffffu, tileMax[r], 2));
            float mNew = fmaxf(m[r], tileMax[r] * log2Scale);
            float base = mNew == NEG_INF ? 0.0f : mNew;  // a row with no key yet: keep zeros, not NaNs
            correction[r] = exp2f(m[r] - base);
            m[r] = mNew;
            tileMax[r] = base;
            l[r] *= correction[r];
        }
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float p = exp2f(fmaf(s[n][j], log2Scale, -tileMax[j >> 1]));
                s[n][j] = p;
                l[j >> 1] += p;
            }
#pragma unroll
        for (int n = 0; n < DTILES; n++) {
            o[n][0] *= correction[0];
            o[n][1] *= correction[0];
            o[n][2] *= correction[1];
            o[n][3] *= correction[1];
        }
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {  // O += P · V over 16 keys at a time
            unsigned int pa[4];
            fatc_to_a(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
            for (int np = 0; np < DTILES / 2; np++) {
                unsigned int vb[4];
                fatc_load_b_trans(vb, Vs + kk * 16 * STRIDE + np * 16, STRIDE, lane);
                fatc_mma(o[2 * np], pa, vb[0], vb[1]);
                fatc_mma(o[2 * np + 1], pa, vb[2], vb[3]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        int t = row[r];
        if (t >= T) continue;
        float* oRow = out + fatc_row(b, T, t, heads, h, D);
        float inverse = 1.0f / l[r];
#pragma unroll
        for (int n = 0; n < DTILES; n++) {
            int d = n * 8 + 2 * c;
            if (d < D) oRow[d] = o[n][2 * r] * inverse;
            if (d + 1 < D) oRow[d + 1] = o[n][2 * r + 1] * inverse;
        }
        if (c == 0) lse[((i64)b * T + t) * heads + h] = (m[r] + log2f(l[r])) * 0.6931471805599453f;
    }
#endif
}

// dQ = scale · dS · K, dS = P ∘ (dP − delta), P = exp(scale · Q·Kᵀ − lse), dP = dO · Vᵀ.
// Grid: (ceil(T / 64), heads, batch); block: 128; dynamic shared memory: (2 · 64 + 2 · BK) · (MAXD + 8) bf16.
template <int MAXD, int BK>
__device__ void flash_attention_tc_backward_dq(const float* q, const float* k, const float* v, const float* dOut,
                                               const float* lse, const float* delta, float* dq,
                                               int T, int heads, int kvHeads, int D, float scale) {
#if __CUDA_ARCH__ >= 800
    constexpr int STRIDE = MAXD + 8, KSTEPS = MAXD / 16, DTILES = MAXD / 8, KTILES = BK / 8;
    extern __shared__ __align__(16) unsigned short fatc_shared[];
    unsigned short* Qs = fatc_shared;
    unsigned short* dOs = Qs + FATC_BR * STRIDE;
    unsigned short* Ks = dOs + FATC_BR * STRIDE;
    unsigned short* Vs = Ks + BK * STRIDE;
    int h = blockIdx.y, b = blockIdx.z, kvh = h / (heads / kvHeads);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    int q0 = (gridDim.x - 1 - blockIdx.x) * FATC_BR;
    int lastQ = min(q0 + FATC_BR, T) - 1;
    int rowW = q0 + warp * 16, row[2] = {rowW + g, rowW + g + 8};
    const float log2e = 1.4426950408889634f, log2Scale = scale * log2e;

    fatc_load_tile<FATC_BR, MAXD>(Qs, q, b, T, q0, heads, h, D);
    fatc_load_tile<FATC_BR, MAXD>(dOs, dOut, b, T, q0, heads, h, D);
    float rowLse[2], rowDelta[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        bool in = row[r] < T;
        rowLse[r] = in ? lse[((i64)b * T + row[r]) * heads + h] * log2e : 0.0f;
        rowDelta[r] = in ? delta[((i64)b * T + row[r]) * heads + h] : 0.0f;
    }
    float acc[DTILES][4];
#pragma unroll
    for (int n = 0; n < DTILES; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

    for (int k0 = 0; k0 <= lastQ; k0 += BK) {
        __syncthreads();  // the previous tile is consumed (Qs and dOs are written, the first time)
        fatc_load_tile<BK, MAXD>(Ks, k, b, T, k0, kvHeads, kvh, D);
        fatc_load_tile<BK, MAXD>(Vs, v, b, T, k0, kvHeads, kvh, D);
        __syncthreads();
        float s[KTILES][4], dp[KTILES][4];
#pragma unroll
        for (int n = 0; n < KTILES; n++)
#pragma unroll
            for (int j = 0; j < 4; j++) s[n][j] = dp[n][j] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KSTEPS; ks++) {
            unsigned int qa[4], da[4];
            fatc_load_a(qa, Qs + warp * 16 * STRIDE + ks * 16, STRIDE, lane);
            fatc_load_a(da, dOs + warp * 16 * STRIDE + ks * 16, STRIDE, lane);
#pragma unroll
            for (int np = 0; np < KTILES / 2; np++) {
                unsigned int kb[4], vb[4];
                fatc_load_b(kb, Ks + np * 16 * STRIDE + ks * 16, STRIDE, lane);
                fatc_load_b(vb, Vs + np * 16 * STRIDE + ks * 16, STRIDE, lane);
                fatc_mma(s[2 * np], qa, kb[0], kb[1]);
                fatc_mma(s[2 * np + 1], qa, kb[2], kb[3]);
                fatc_mma(dp[2 * np], da, vb[0], vb[1]);
                fatc_mma(dp[2 * np + 1], da, vb[2], vb[3]);
            }
        }
#pragma unroll
        for (int n = 0; n < KTILES; n++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int key = k0 + n * 8 + 2 * c + (j & 1), r = j >> 1;
                float p = key <= row[r] ? exp2f(s[n][j] * log2Scale - rowLse[r]) : 0.0f;
                s[n][j] = p * (dp[n][j] - rowDelta[r]);  // dS
            }
#pragma unroll
        for (int kk = 0; kk < KTILES / 2; kk++) {  // dQ += dS · K over 16 keys at a time
            unsigned int dsa[4];
            fatc_to_a(dsa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
            for (int np = 0; np < DTILES / 2; np++) {
                unsigned int kb[4];
                fatc_load_b_trans(kb, Ks + kk * 16 * STRIDE + np * 16, STRIDE, lane);
                fatc_mma(acc[2 * np], dsa, kb[0], kb[1]);
                fatc_mma(acc[2 * np + 1], dsa, kb[2], kb[3]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int t = row[r];
        if (t >= T) continue;
        float* out = dq + fatc_row(b, T, t, heads, h, D);
#pragma unroll
        for (int n = 0; n < DTILES; n++) {
            int d = n * 8 + 2 * c;
            if (d < D) out[d] = scale * acc[n][2 * r];
            if (d + 1 < D) out[d + 1] = scale * acc[n][2 * r + 1];
        }
    }
#endif
}

// dV = Σ_h Pᵀ · dO and dK = scale · Σ_h dSᵀ · Q over the group's query heads h, computed transposed
// (a warp's 16 keys are the rows: Sᵀ = K · Qᵀ, dPᵀ = V · dOᵀ). Grid: (ceil(T / 64), kvHeads, batch);
// block: 128; dynamic shared memory: (2 · 64 + 2 · BQ) · (MAXD + 8) bf16 + 2 · BQ floats.
template <int MAXD, int BQ>
__device__ void flash_attention_tc_backward_dkdv(const float* q, const float* k, const float* v, const float* dOut,
                                                 const float* lse, const float* delta, float* dk, float* dv,
                                                 int T, int heads, int kvHeads, int D, float scale) {
#if __CUDA_ARCH__ >= 800
    constexpr int STRIDE = MAXD + 8, KSTEPS = MAXD / 16, DTILES = MAXD / 8, QTILES = BQ / 8;
    extern __shared__ __align__(16) unsigned short fatc_shared[];
    unsigned short* Ks = fatc_shared;
    unsigned short* Vs = Ks + FATC_BR * STRIDE;
    unsigned short* Qs = Vs + FATC_BR * STRIDE;
    unsigned short* dOs = Qs + BQ * STRIDE;
    float* tileLse = (float*)(dOs + BQ * STRIDE);  // base-2 units
    float* tileDelta = tileLse + BQ;
    int kvh = blockIdx.y, b = blockIdx.z, group = heads / kvHeads;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    int k0 = (gridDim.x - 1 - blockIdx.x) * FATC_BR;  // the keys with the most queries start first
    int keyW = k0 + warp * 16, key[2] = {keyW + g, keyW + g + 8};
    const float log2e = 1.4426950408889634f, log2Scale = scale * log2e;

    fatc_load_tile<FATC_BR, MAXD>(Ks, k, b, T, k0, kvHeads, kvh, D);
    fatc_load_tile<FATC_BR, MAXD>(Vs, v, b, T, k0, kvHeads, kvh, D);
    float dkAcc[DTILES][4], dvAcc[DTILES][4];
#pragma unroll
    for (int n = 0; n < DTILES; n++)
#pragma unroll
        for (int j = 0; j < 4; j++) dkAcc[n][j] = dvAcc[n][j] = 0.0f;

    for (int hq = 0; hq < group; hq++) {
        int h = kvh * group + hq;
        for (int t0 = k0; t0 < T; t0 += BQ) {  // queries before k0 see none of these keys
            __syncthreads();  // the previous tile is consumed (Ks and Vs are written, the first time)
            // (fewer loads in flight at head dim 128, where dK and dV take 128 registers)
            fatc_load_tile<BQ, MAXD, MAXD == 128 ? 4 : 8>(Qs, q, b, T, t0, heads, h, D);
            fatc_load_tile<BQ, MAXD, MAXD == 128 ? 4 : 8>(dOs, dOut, b, T, t0, heads, h, D);
            if (threadIdx.x < BQ) {
                int t = t0 + threadIdx.x;
                tileLse[threadIdx.x] = t < T ? lse[((i64)b * T + t) * heads + h] * log2e : 0.0f;
                tileDelta[threadIdx.x] = t < T ? delta[((i64)b * T + t) * heads + h] : 0.0f;
            }
            __syncthreads();
            if (t0 + BQ - 1 < keyW) continue;  // every query of the tile is before this warp's keys
            float s[QTILES][4], dp[QTILES][4];
#pragma unroll
            for (int n = 0; n < QTILES; n++)
#pragma unroll
                for (int j = 0; j < 4; j++) s[n][j] = dp[n][j] = 0.0f;
#pragma unroll 2  // not fully: at head dim 128 the hoisted fragments would spill
            for (int ks = 0; ks < KSTEPS; ks++) {
                unsigned int ka[4], va[4];
                fatc_load_a(ka, Ks + warp * 16 * STRIDE + ks * 16, STRIDE, lane);
                fatc_load_a(va, Vs + warp * 16 * STRIDE + ks * 16, STRIDE, lane);
#pragma unroll
                for (int np = 0; np < QTILES / 2; np++) {
                    unsigned int qb[4], db[4];
                    fatc_load_b(qb, Qs + np * 16 * STRIDE + ks * 16, STRIDE, lane);
                    fatc_load_b(db, dOs + np * 16 * STRIDE + ks * 16, STRIDE, lane);
                    fatc_mma(s[2 * np], ka, qb[0], qb[1]);
                    fatc_mma(s[2 * np + 1], ka, qb[2], qb[3]);
                    fatc_mma(dp[2 * np], va, db[0], db[1]);
                    fatc_mma(dp[2 * np + 1], va, db[2], db[3]);
                }
            }
#pragma unroll
            for (int n = 0; n < QTILES; n++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    int column = n * 8 + 2 * c + (j & 1), t = t0 + column;
                    bool valid = t < T && t >= key[j >> 1];
                    float p = valid ? exp2f(s[n][j] * log2Scale - tileLse[column]) : 0.0f;
                    s[n][j] = p;
                    dp[n][j] = p * (dp[n][j] - tileDelta[column]);  // dSᵀ
                }
#pragma unroll
            for (int kk = 0; kk < QTILES / 2; kk++) {  // dV += Pᵀ · dO, dK += dSᵀ · Q over 16 queries at a time
                unsigned int pa[4], dsa[4];
                fatc_to_a(pa, s[2 * kk], s[2 * kk + 1]);
                fatc_to_a(dsa, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
                for (int np = 0; np < DTILES / 2; np++) {
                    unsigned int db[4], qb[4];
                    fatc_load_b_trans(db, dOs + kk * 16 * STRIDE + np * 16, STRIDE, lane);
                    fatc_load_b_trans(qb, Qs + kk * 16 * STRIDE + np * 16, STRIDE, lane);
                    fatc_mma(dvAcc[2 * np], pa, db[0], db[1]);
                    fatc_mma(dvAcc[2 * np + 1], pa, db[2], db[3]);
                    fatc_mma(dkAcc[2 * np], dsa, qb[0], qb[1]);
                    fatc_mma(dkAcc[2 * np + 1], dsa, qb[2], qb[3]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int j = key[r];
        if (j >= T) continue;
        float* dkRow = dk + fatc_row(b, T, j, kvHeads, kvh, D);
        float* dvRow = dv + fatc_row(b, T, j, kvHeads, kvh, D);
#pragma unroll
        for (int n = 0; n < DTILES; n++) {
            int d = n * 8 + 2 * c;
            if (d < D) {
                dkRow[d] = scale * dkAcc[n][2 * r];
                dvRow[d] = dvAcc[n][2 * r];
            }
            if (d + 1 < D) {
                dkRow[d + 1] = scale * dkAcc[n][2 * r + 1];
                dvRow[d + 1] = dvAcc[n][2 * r + 1];
            }
        }
    }
#endif
}

#define FATC_VARIANT(NAME, MAXD, BK, BQ)                                                                                  \
extern "C" __global__ void __launch_bounds__(128) flash_attention_tc_forward_##NAME(const float* q, const float* k,          \
        const float* v, float* out, float* lse, int T, int heads, int kvHeads, int D, float scale) {                           \
    flash_attention_tc_forward<MAXD>(q, k, v, out, lse, T, heads, kvHeads, D, scale);                                         \
}                                                                                                                               \
extern "C" __global__ void __launch_bounds__(128) flash_attention_tc_backward_dq_##NAME(const float* q, const float* k,      \
        const float* v, const float* dOut, const float* lse, const float* delta, float* dq, int T, int heads, int kvHeads,     \
        int D, float scale) {                                                                                                   \
    flash_attention_tc_backward_dq<MAXD, BK>(q, k, v, dOut, lse, delta, dq, T, heads, kvHeads, D, scale);                         \
}                                                                                                                               \
extern "C" __global__ void __launch_bounds__(128) flash_attention_tc_backward_dkdv_##NAME(const float* q, const float* k,    \
        const float* v, const float* dOut, const float* lse, const float* delta, float* dk, float* dv, int T, int heads,       \
        int kvHeads, int D, float scale) {                                                                                      \
    flash_attention_tc_backward_dkdv<MAXD, BQ>(q, k, v, dOut, lse, delta, dk, dv, T, heads, kvHeads, D, scale);               \
}
FATC_VARIANT(d64, 64, 32, 32)
FATC_VARIANT(d128, 128, 32, 32)
"""#
}

/// Causal self-attention over whole sequences for training, grouped-query, f32, head dims ≤ 128 (instances
/// for ≤ 64 and ≤ 128): a
/// flash-attention-style forward (tiles of keys through shared memory, online softmax, the row's
/// log-sum-exp saved) and a backward that recomputes the probabilities from it, never holding a
/// [T, T] matrix in global memory (FlashAttention-2's algorithm, in the plain style of llm.c).
///
/// Layouts: q, out, dq: [batch · T, heads, D]; k, v, dk, dv: [batch · T, kvHeads, D]; lse, delta:
/// [batch · T, heads]. Query head h reads kv head h / (heads / kvHeads). Scores are scaled (s = scale·q·k)
/// and lse is the log-sum-exp of the scaled scores.
///
/// Work split (a warp is 32 lanes; each warp owns `ROWS` rows and keeps their accumulators in registers,
/// lane `l` holding dims l, l + 32, l + 64, l + 96):
/// - forward and dQ: a block per (16 queries, head, sequence); 4 warps × 4 query rows. Key tiles of 32
///   keys go through shared memory; lane j scores key j of the tile against each of its warp's rows.
/// - dK, dV: a block per (16 keys, kv head, sequence); 4 warps × 4 key rows. Query tiles of 32 queries
///   (of every query head of the group) go through shared memory; lane j takes query j of the tile.
///   No atomics: dk and dv sum over the group's heads inside the block.
enum TrainingAttentionKernels {
    static let kernels = CUDAKernelSource(family: "training_attention", source: source, functions: functions)

    static let functions = ["attention_backward_delta_f32"] + variants.flatMap { variant in
        ["forward", "backward_dq", "backward_dkdv"].map { "flash_attention_\($0)_\(variant.name)_f32" }
    }

    /// Instantiations by head dimension: dims per lane 2 (≤ 64) or 4 (≤ 128).
    static let variants: [(name: String, maxHeadDim: Int)] = [("d64", 64), ("d128", 128)]
    static let maxHeadDim = 128

    /// The instantiation for `headDim` (≤ 128) and its bytes of dynamic shared memory for dQ and dK/dV.
    static func variant(headDim: Int) -> (name: String, dqSharedBytes: Int, dkdvSharedBytes: Int) {
        let maxD = headDim <= 64 ? 64 : 128
        let tiles = 2 * blockRows * maxD + 2 * 32 * (maxD + 1)
        return (maxD == 64 ? "d64" : "d128", tiles * 4, (tiles + 2 * 32) * 4)
    }
    /// Rows (queries or keys) a block owns: warps × rows per warp.
    static let blockRows = 16
    static let threads = 128

    static let source = #"""
// Templated on PER, the dims per lane (2: head dims ≤ 64, 4: ≤ 128), so that a 64-dim head does no
// work on dims it does not have and its tiles take half the shared memory.
#define FA_WARPS 4
#define FA_ROWS 4       // rows per warp
#define FA_BR 16        // FA_WARPS * FA_ROWS: rows per block
#define FA_BT 32        // keys (forward, dQ) or queries (dK, dV) per tile: one per lane

__device__ __forceinline__ i64 fa_row(int b, int T, int t, int heads, int h, int D) {
    return (((i64)b * T + t) * heads + h) * D;
}

// Grid: (ceil(T / 16), heads, batch); block: 128.
template <int PER>
__device__ void flash_attention_forward(const float* q, const float* k, const float* v, float* out, float* lse,
                                        int T, int heads, int kvHeads, int D, float scale) {
    constexpr int FA_MAXD = 32 * PER, FA_PAD = FA_MAXD + 1;  // FA_PAD: stride of tiles read along the lane index
    __shared__ float Qs[FA_BR][FA_MAXD];      // scaled queries, read as broadcasts
    __shared__ float Ks[FA_BT][FA_PAD];       // read along lanes: padded (conflict-free banks)
    __shared__ float Vs[FA_BT][FA_MAXD];      // read along dims
    int h = blockIdx.y, b = blockIdx.z, kvh = h / (heads / kvHeads);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int q0 = blockIdx.x * FA_BR;
    int lastQ = min(q0 + FA_BR, T) - 1;
    for (int i = threadIdx.x; i < FA_BR * D; i += blockDim.x) {
        int r = i / D, d = i % D, t = q0 + r;
        Qs[r][d] = t < T ? q[fa_row(b, T, t, heads, h, D) + d] * scale : 0.0f;
    }
    float m[FA_ROWS], l[FA_ROWS], o[FA_ROWS][PER];
#pragma unroll
    for (int r = 0; r < FA_ROWS; r++) {
        m[r] = NEG_INF;
        l[r] = 0.0f;
#pragma unroll
        for (int i = 0; i < PER; i++) o[r][i] = 0.0f;
    }
    int row0 = q0 + warp * FA_ROWS;  // this warp's first query
    for (int k0 = 0; k0 <= lastQ; k0 += FA_BT) {
        __syncthreads();  // the previous tile is consumed (and Qs is written, the first time)
        for (int i = threadIdx.x; i < FA_BT * D; i += blockDim.x) {
            int j = i / D, d = i % D, key = k0 + j;
            bool in = key < T;
            Ks[j][d] = in ? k[fa_row(b, T, key, kvHeads, kvh, D) + d] : 0.0f;
            Vs[j][d] = in ? v[fa_row(b, T, key, kvHeads, kvh, D) + d] : 0.0f;
        }
        __syncthreads();
        int key = k0 + lane;
        float s[FA_ROWS], p[FA_ROWS];
#pragma unroll
        for (int r = 0; r < FA_ROWS; r++) s[r] = 0.0f;
        for (int d = 0; d < D; d++) {
            float kd = Ks[lane][d];
#pragma unroll
            for (int r = 0; r < FA_ROWS; r++) s[r] += Qs[warp * FA_ROWS + r][d] * kd;
        }
#pragma unroll
        for (int r = 0; r < FA_ROWS; r++) {
            int t = row0 + r;
            bool valid = t < T && key <= t;
            float sv = valid ? s[r] : NEG_INF;
            float mNew = fmaxf(m[r], warp_max(sv));  // the same in every lane
            if (mNew == NEG_INF) {  // a row past the end: nothing to attend to
                p[r] = 0.0f;
                continue;
            }
            float correction = expf(m[r] - mNew);
            p[r] = valid ? expf(sv - mNew) : 0.0f;
            l[r] = l[r] * correction + warp_sum(p[r]);
#pragma unroll
            for (int i = 0; i < PER; i++) o[r][i] *= correction;
            m[r] = mNew;
        }
        for (int j = 0; j < FA_BT; j++) {
            float vj[PER];
#pragma unroll
            for (int i = 0; i < PER; i++) {
                int d = lane + 32 * i;
                vj[i] = d < D ? Vs[j][d] : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < FA_ROWS; r++) {
                float pj = __shfl_sync(0xffffffffu, p[r], j);
#pragma unroll
                for (int i = 0; i < PER; i++) o[r][i] += pj * vj[i];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < FA_ROWS; r++) {
        int t = row0 + r;
        if (t >= T) continue;
        float* oRow = out + fa_row(b, T, t, heads, h, D);
#pragma unroll
        for (int i = 0; i < PER; i++) {
            int d = lane + 32 * i;
            if (d < D) oRow[d] = o[r][i] / l[r];
        }
        if (lane == 0) lse[((i64)b * T + t) * heads + h] = m[r] + logf(l[r]);
    }
}

// delta[n, h] = Σ_d dOut[n, h, d] · out[n, h, d]: a warp per (token, head).
extern "C" __global__ void attention_backward_delta_f32(const float* out, const float* dOut, float* delta, i64 rows, int D) {
    int lane = threadIdx.x & 31;
    i64 warps = (i64)gridDim.x * (blockDim.x >> 5);
    for (i64 r = blockIdx.x * (i64)(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
        float s = 0.0f;
        for (int d = lane; d < D; d += 32) s += out[r * D + d] * dOut[r * D + d];
        s = warp_sum(s);
        if (lane == 0) delta[r] = s;
    }
}

// dQ[t] = scale · Σ_j dS[t, j] · K[j], dS = P ∘ (dP − delta), P = exp(s − lse), dP = dO · Vᵀ.
// Grid: (ceil(T / 16), heads, batch); block: 128; dynamic shared memory: 2·16·MAXD + 2·32·(MAXD + 1) floats.
template <int PER>
__device__ void flash_attention_backward_dq(const float* q, const float* k, const float* v, const float* dOut,
                                            const float* lse, const float* delta, float* dq,
                                            int T, int heads, int kvHeads, int D, float scale) {
    constexpr int FA_MAXD = 32 * PER, FA_PAD = FA_MAXD + 1;
    extern __shared__ float smem[];
    float (*Qs)[FA_MAXD] = (float (*)[FA_MAXD])smem;                        // [FA_BR][FA_MAXD], scaled
    float (*dOs)[FA_MAXD] = (float (*)[FA_MAXD])(smem + FA_BR * FA_MAXD);   // [FA_BR][FA_MAXD]
    float (*Ks)[FA_PAD] = (float (*)[FA_PAD])(smem + 2 * FA_BR * FA_MAXD);  // [FA_BT][FA_PAD]
    float (*Vs)[FA_PAD] = Ks + FA_BT;                                       // [FA_BT][FA_PAD]
    int h = blockIdx.y, b = blockIdx.z, kvh = h / (heads / kvHeads);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int q0 = blockIdx.x * FA_BR;
    int lastQ = min(q0 + FA_BR, T) - 1;
    for (int i = threadIdx.x; i < FA_BR * D; i += blockDim.x) {
        int r = i / D, d = i % D, t = q0 + r;
        bool in = t < T;
        Qs[r][d] = in ? q[fa_row(b, T, t, heads, h, D) + d] * scale : 0.0f;
        dOs[r][d] = in ? dOut[fa_row(b, T, t, heads, h, D) + d] : 0.0f;
    }
    int row0 = q0 + warp * FA_ROWS;
    float rowLse[FA_ROWS], rowDelta[FA_ROWS], acc[FA_ROWS][PER];
#pragma unroll
    for (int r = 0; r < FA_ROWS; r++) {
        int t = row0 + r;
        rowLse[r] = t < T ? lse[((i64)b * T + t) * heads + h] : 0.0f;
        rowDelta[r] = t < T ? delta[((i64)b * T + t) * heads + h] : 0.0f;
#pragma unroll
        for (int i = 0; i < PER; i++) acc[r][i] = 0.0f;
    }
    for (int k0 = 0; k0 <= lastQ; k0 += FA_BT) {
        __syncthreads();
        for (int i = threadIdx.x; i < FA_BT * D; i += blockDim.x) {
            int j = i / D, d = i % D, key = k0 + j;
            bool in = key < T;
            Ks[j][d] = in ? k[fa_row(b, T, key, kvHeads, kvh, D) + d] : 0.0f;
            Vs[j][d] = in ? v[fa_row(b, T, key, kvHeads, kvh, D) + d] : 0.0f;
        }
        __syncthreads();
        int key = k0 + lane;
        float s[FA_ROWS], dp[FA_ROWS];
#pragma unroll
        for (int r = 0; r < FA_ROWS; r++) {
            s[r] = 0.0f;
            dp[r] = 0.0f;
        }
        for (int d = 0; d < D; d++) {
            float kd = Ks[lane][d], vd = Vs[lane][d];
#pragma unroll
            for (int r = 0; r < FA_ROWS; r++) {
                s[r] += Qs[warp * FA_ROWS + r][d] * kd;
                dp[r] += dOs[warp * FA_ROWS + r][d] * vd;
            }
        }
        float ds[FA_ROWS];
#pragma unroll
        for (int r = 0; r < FA_ROWS; r++) {
            int t = row0 + r;
            bool valid = t < T && key <= t;
            float p = valid ? expf(s[r] - rowLse[r]) : 0.0f;
            ds[r] = p * (dp[r] - rowDelta[r]);
        }
        for (int j = 0; j < FA_BT; j++) {
            float kj[PER];
#pragma unroll
            for (int i = 0; i < PER; i++) {
                int d = lane + 32 * i;
                kj[i] = d < D ? Ks[j][d] : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < FA_ROWS; r++) {
                float dsj = __shfl_sync(0xffffffffu, ds[r], j);
#pragma unroll
                for (int i = 0; i < PER; i++) acc[r][i] += dsj * kj[i];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < FA_ROWS; r++) {
        int t = row0 + r;
        if (t >= T) continue;
        float* row = dq + fa_row(b, T, t, heads, h, D);
#pragma unroll
        for (int i = 0; i < PER; i++) {
            int d = lane + 32 * i;
            if (d < D) row[d] = scale * acc[r][i];
        }
    }
}

// dV[j] = Σ_h Σ_t P[t, j] · dO[t];  dK[j] = Σ_h Σ_t dS[t, j] · scale · Q[t]; over the group's query heads h
// and the queries t ≥ j. Grid: (ceil(T / 16), kvHeads, batch); block: 128; dynamic shared memory:
// 2·16·MAXD + 2·32·(MAXD + 1) + 2·32 floats.
template <int PER>
__device__ void flash_attention_backward_dkdv(const float* q, const float* k, const float* v, const float* dOut,
                                              const float* lse, const float* delta, float* dk, float* dv,
                                              int T, int heads, int kvHeads, int D, float scale) {
    constexpr int FA_MAXD = 32 * PER, FA_PAD = FA_MAXD + 1;
    extern __shared__ float smem[];
    float (*Ks)[FA_MAXD] = (float (*)[FA_MAXD])smem;                        // [FA_BR][FA_MAXD], read as broadcasts
    float (*Vs)[FA_MAXD] = (float (*)[FA_MAXD])(smem + FA_BR * FA_MAXD);    // [FA_BR][FA_MAXD]
    float (*Qs)[FA_PAD] = (float (*)[FA_PAD])(smem + 2 * FA_BR * FA_MAXD);  // [FA_BT][FA_PAD], scaled
    float (*dOs)[FA_PAD] = Qs + FA_BT;                                      // [FA_BT][FA_PAD]
    float* tileLse = smem + 2 * FA_BR * FA_MAXD + 2 * FA_BT * FA_PAD;      // [FA_BT]
    float* tileDelta = tileLse + FA_BT;                                     // [FA_BT]
    int kvh = blockIdx.y, b = blockIdx.z, group = heads / kvHeads;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int k0 = blockIdx.x * FA_BR;
    for (int i = threadIdx.x; i < FA_BR * D; i += blockDim.x) {
        int r = i / D, d = i % D, key = k0 + r;
        bool in = key < T;
        Ks[r][d] = in ? k[fa_row(b, T, key, kvHeads, kvh, D) + d] : 0.0f;
        Vs[r][d] = in ? v[fa_row(b, T, key, kvHeads, kvh, D) + d] : 0.0f;
    }
    int key0 = k0 + warp * FA_ROWS;  // this warp's first key
    float dkAcc[FA_ROWS][PER], dvAcc[FA_ROWS][PER];
#pragma unroll
    for (int r = 0; r < FA_ROWS; r++)
#pragma unroll
        for (int i = 0; i < PER; i++) {
            dkAcc[r][i] = 0.0f;
            dvAcc[r][i] = 0.0f;
        }
    for (int hq = 0; hq < group; hq++) {
        int h = kvh * group + hq;
        for (int t0 = (k0 / FA_BT) * FA_BT; t0 < T; t0 += FA_BT) {  // queries before k0 see none of these keys
            __syncthreads();  // the previous tile is consumed (and Ks, Vs are written, the first time)
            for (int i = threadIdx.x; i < FA_BT * D; i += blockDim.x) {
                int j = i / D, d = i % D, t = t0 + j;
                bool in = t < T;
                Qs[j][d] = in ? q[fa_row(b, T, t, heads, h, D) + d] * scale : 0.0f;
                dOs[j][d] = in ? dOut[fa_row(b, T, t, heads, h, D) + d] : 0.0f;
            }
            if (threadIdx.x < FA_BT) {
                int t = t0 + threadIdx.x;
                tileLse[threadIdx.x] = t < T ? lse[((i64)b * T + t) * heads + h] : 0.0f;
                tileDelta[threadIdx.x] = t < T ? delta[((i64)b * T + t) * heads + h] : 0.0f;
            }
            __syncthreads();
            int t = t0 + lane;  // this lane's query
            float s[FA_ROWS], dp[FA_ROWS];
#pragma unroll
            for (int r = 0; r < FA_ROWS; r++) {
                s[r] = 0.0f;
                dp[r] = 0.0f;
            }
            for (int d = 0; d < D; d++) {
                float qd = Qs[lane][d], dod = dOs[lane][d];
#pragma unroll
                for (int r = 0; r < FA_ROWS; r++) {
                    s[r] += qd * Ks[warp * FA_ROWS + r][d];
                    dp[r] += dod * Vs[warp * FA_ROWS + r][d];
                }
            }
            float p[FA_ROWS], ds[FA_ROWS];
#pragma unroll
            for (int r = 0; r < FA_ROWS; r++) {
                int key = key0 + r;
                bool valid = t < T && key <= t;  // key <= t < T: the key exists too
                p[r] = valid ? expf(s[r] - tileLse[lane]) : 0.0f;
                ds[r] = p[r] * (dp[r] - tileDelta[lane]);
            }
            for (int j = 0; j < FA_BT; j++) {
                float qj[PER], doj[PER];
#pragma unroll
                for (int i = 0; i < PER; i++) {
                    int d = lane + 32 * i;
                    qj[i] = d < D ? Qs[j][d] : 0.0f;
                    doj[i] = d < D ? dOs[j][d] : 0.0f;
                }
#pragma unroll
                for (int r = 0; r < FA_ROWS; r++) {
                    float pj = __shfl_sync(0xffffffffu, p[r], j), dsj = __shfl_sync(0xffffffffu, ds[r], j);
#pragma unroll
                    for (int i = 0; i < PER; i++) {
                        dvAcc[r][i] += pj * doj[i];
                        dkAcc[r][i] += dsj * qj[i];
                    }
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < FA_ROWS; r++) {
        int key = key0 + r;
        if (key >= T) continue;
        float* dkRow = dk + fa_row(b, T, key, kvHeads, kvh, D);
        float* dvRow = dv + fa_row(b, T, key, kvHeads, kvh, D);
#pragma unroll
        for (int i = 0; i < PER; i++) {
            int d = lane + 32 * i;
            if (d < D) {
                dkRow[d] = dkAcc[r][i];
                dvRow[d] = dvAcc[r][i];
            }
        }
    }
}
#define FA_VARIANT(NAME, PER)                                                                                         \
extern "C" __global__ void flash_attention_forward_##NAME##_f32(const float* q, const float* k, const float* v, float* out,     \
        float* lse, int T, int heads, int kvHeads, int D, float scale) {                                                       \
    flash_attention_forward<PER>(q, k, v, out, lse, T, heads, kvHeads, D, scale);                                               \
}                                                                                                                               \
extern "C" __global__ void flash_attention_backward_dq_##NAME##_f32(const float* q, const float* k, const float* v,            \
        const float* dOut, const float* lse, const float* delta, float* dq, int T, int heads, int kvHeads, int D, float scale) { \
    flash_attention_backward_dq<PER>(q, k, v, dOut, lse, delta, dq, T, heads, kvHeads, D, scale);                               \
}                                                                                                                               \
extern "C" __global__ void flash_attention_backward_dkdv_##NAME##_f32(const float* q, const float* k, const float* v,          \
        const float* dOut, const float* lse, const float* delta, float* dk, float* dv, int T, int heads, int kvHeads, int D,     \
        float scale) {                                                                                                          \
    flash_attention_backward_dkdv<PER>(q, k, v, dOut, lse, delta, dk, dv, T, heads, kvHeads, D, scale);                         \
}
FA_VARIANT(d64, 2)
FA_VARIANT(d128, 4)
"""#
}

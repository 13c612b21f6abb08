/// Elementwise and reduction kernels of training: activation and SwiGLU backward, scale, the bias
/// gradient (a column sum), the embedding gradient (an atomic scatter), Σ x² in f64, the inverse
/// rotary rotation and the fused AdamW step. All f32; one thread per element in grid-stride loops.
enum TrainingElementwiseKernels {
    static let kernels = CUDAKernelSource(family: "training_elementwise", source: source, functions: functions)

    static let functions = [
        "activation_backward_f32", "swiglu_backward_f32", "scale_f32", "column_sum_accumulate_f32",
        "embedding_backward_f32", "sum_squares_partial_f32", "sum_squares_final", "rotary_backward_f32", "adamw_f32",
    ]

    /// Blocks of the first pass of `sum_squares` (its partials are summed by one block of as many threads).
    static let sumOfSquaresBlocks = 512

    static let source = #"""
__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

// dx = dy · act'(x), x the activation's input. kind: 0 relu, 1 gelu (erf), 2 gelu (tanh), 3 silu.
// dx may alias dy (each thread reads its element before writing it).
extern "C" __global__ void activation_backward_f32(const float* x, const float* dy, float* dx, i64 n, int kind) {
    GRID_STRIDE(i, n) {
        float v = x[i], g;
        switch (kind) {
        case 0: g = v > 0.0f ? 1.0f : 0.0f; break;  // as PyTorch: the gradient at 0 is 0
        case 1: {
            float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
            g = cdf + v * pdf;
            break;
        }
        case 2: {
            const float k0 = 0.79788456080286536f, k1 = 0.044715f;
            float th = tanhf(k0 * (v + k1 * v * v * v));
            g = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * k0 * (1.0f + 3.0f * k1 * v * v);
            break;
        }
        default: {
            float s = sigmoid_f(v);
            g = s * (1.0f + v * (1.0f - s));
            break;
        }
        }
        dx[i] = dy[i] * g;
    }
}

// y = silu(gate) · up: dGate = dy · up · silu'(gate), dUp = dy · silu(gate).
extern "C" __global__ void swiglu_backward_f32(const float* gate, const float* up, const float* dy, float* dGate, float* dUp, i64 n) {
    GRID_STRIDE(i, n) {
        float g = gate[i], s = sigmoid_f(g), d = dy[i];
        dGate[i] = d * up[i] * s * (1.0f + g * (1.0f - s));
        dUp[i] = d * g * s;
    }
}

extern "C" __global__ void scale_f32(const float* x, float* y, i64 n, float factor) {
    GRID_STRIDE(i, n) y[i] = x[i] * factor;
}

// db[c] += Σ_r dy[r, c]. Block (32, 8): 32 columns, 8 row lanes; grid.y splits the rows, and the
// per-block sums meet in db with one atomic add per column and block.
extern "C" __global__ void column_sum_accumulate_f32(const float* dy, float* db, i64 rows, int cols) {
    __shared__ float partial[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (c < cols)
        for (i64 r = blockIdx.y * 8 + threadIdx.y; r < rows; r += (i64)gridDim.y * 8) s += dy[r * cols + c];
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        for (int y = 1; y < 8; y++) s += partial[y][threadIdx.x];
        atomicAdd(db + c, s);
    }
}

// dTable[ids[t], :] += dy[t, :]. Grid: x over the hidden dimension, y over tokens. Ids repeat, so the
// adds are atomic.
extern "C" __global__ void embedding_backward_f32(const int* ids, const float* dy, float* dTable, int tokens, int hidden) {
    for (int t = blockIdx.y; t < tokens; t += gridDim.y) {
        float* row = dTable + (i64)ids[t] * hidden;
        const float* g = dy + (i64)t * hidden;
        for (int h = blockIdx.x * blockDim.x + threadIdx.x; h < hidden; h += gridDim.x * blockDim.x) atomicAdd(row + h, g[h]);
    }
}

__device__ double block_sum_f64(double v, double* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Σ x² in f64, two passes (deterministic): each block writes its partial, then one block sums them.
extern "C" __global__ void sum_squares_partial_f32(const float* x, double* partials, i64 n) {
    __shared__ double scratch[32];
    double s = 0.0;
    GRID_STRIDE(i, n) {
        double v = x[i];
        s += v * v;
    }
    s = block_sum_f64(s, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

extern "C" __global__ void sum_squares_final(const double* partials, double* out, int count) {
    __shared__ double scratch[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
    s = block_sum_f64(s, scratch);
    if (threadIdx.x == 0) out[0] = s;
}

// The transpose of `rotary_f32` (same angles, computed the same way): a rotation by the opposite angle.
extern "C" __global__ void rotary_backward_f32(float* x, const int* positions, int tokens, int heads, int headDim, float theta) {
    int half = headDim / 2;
    i64 pairs = (i64)tokens * heads * half;
    GRID_STRIDE(idx, pairs) {
        int i = (int)(idx % half);
        i64 head = idx / half;
        int t = (int)(head / heads);
        float invFreq = 1.0f / powf(theta, (float)(2 * i) / (float)headDim);
        float angle = (float)positions[t] * invFreq;
        float s, c;
        sincosf(angle, &s, &c);
        float* row = x + head * headDim;
        float x0 = row[i], x1 = row[i + half];
        row[i] = x0 * c + x1 * s;
        row[i + half] = x1 * c - x0 * s;
    }
}

// torch.optim.AdamW (single-tensor form) over a flat buffer, in its order of operations:
//   p *= 1 - lr·wd (inside a decay range only); m = lerp(m, g, 1 - β1); v = β2·v + (1 - β2)·g²;
//   p -= stepSize · m / (sqrt(v) / bc2Sqrt + eps), with stepSize = lr / (1 - β1^t), bc2Sqrt = sqrt(1 - β2^t).
// The scalars come from the host, computed in double as Python computes them, then rounded to f32.
// ranges: `rangeCount` sorted, disjoint [start, end) pairs of elements that decay; each thread finds
// its element's range by binary search (the table is small and stays in L1). lowp: an optional bf16
// copy of the updated parameters (the mixed-precision GEMM operands).
extern "C" __global__ void adamw_f32(float* p, const float* g, float* m, float* v, bf16* lowp, i64 n,
                                     const i64* ranges, int rangeCount, float decayFactor, float oneMinusBeta1,
                                     float beta2, float oneMinusBeta2, float eps, float stepSize, float bc2Sqrt) {
    GRID_STRIDE(i, n) {
        int lo = 0, hi = rangeCount;  // first range whose end is > i
        while (lo < hi) {
            int mid = (lo + hi) >> 1;
            if (ranges[2 * mid + 1] <= i) lo = mid + 1; else hi = mid;
        }
        bool decays = lo < rangeCount && ranges[2 * lo] <= i;
        float param = p[i], grad = g[i];
        if (decays) param *= decayFactor;
        float w = oneMinusBeta1, mi = m[i];
        // torch.lerp: start + w·(end − start) for w < 0.5, else end − (end − start)·(1 − w)
        mi = w < 0.5f ? mi + w * (grad - mi) : grad - (grad - mi) * (1.0f - w);
        float vi = v[i] * beta2 + oneMinusBeta2 * grad * grad;
        float denom = sqrtf(vi) / bc2Sqrt + eps;
        param = param - stepSize * (mi / denom);
        p[i] = param;
        m[i] = mi;
        v[i] = vi;
        if (lowp) lowp[i] = from_float<bf16>(param);
    }
}
"""#
}

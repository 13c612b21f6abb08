/// Backward of layer norm and RMS norm: a block per row (blocks loop over rows), statistics recomputed
/// from x in f32 as the forward computes them. The weight (and bias) gradients must not race: each block
/// accumulates its rows into its own row of `partials` (thread i owns columns i, i + blockDim, …), then
/// `reduce_partials_f32` sums the blocks' rows into the gradient, in a fixed order (deterministic).
enum TrainingNormKernels {
    static let kernels = CUDAKernelSource(family: "training_norm", source: source, functions: functions)

    static let functions = CUDAKernelLibrarySources.floatTypes.flatMap {
        ["layernorm_backward_\($0.name)", "rmsnorm_backward_\($0.name)"]
    } + ["reduce_partials_f32"]

    /// Blocks (and rows of partials) of a norm backward at most.
    static let maxBlocks = 256

    static var source: String {
        var out = #"""
// x, dy, dx: [rows, hidden] (dx may alias dy); partials: [gridDim.x, 2 · hidden], the block's Σ dy·x̂
// then Σ dy over its rows. dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)), g = dy · w.
template <typename W>
__device__ void layernorm_backward(const float* x, const W* w, const float* dy, float* dx, float* partials,
                                   int rows, int hidden, float eps) {
    __shared__ float scratch[32];
    float* pw = partials + (i64)blockIdx.x * 2 * hidden;
    float* pb = pw + hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        pw[i] = 0.0f;
        pb[i] = 0.0f;
    }
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + (i64)r * hidden;
        const float* dyr = dy + (i64)r * hidden;
        float* dxr = dx + (i64)r * hidden;
        float s = 0.0f;
        for (int i = threadIdx.x; i < hidden; i += blockDim.x) s += xr[i];
        float mean = block_sum(s, scratch) / hidden;
        float var = 0.0f;
        for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
            float d = xr[i] - mean;
            var += d * d;
        }
        float rstd = 1.0f / sqrtf(block_sum(var, scratch) / hidden + eps);
        float sumG = 0.0f, sumGX = 0.0f;
        for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
            float xhat = (xr[i] - mean) * rstd, g = dyr[i] * to_float(w[i]);
            sumG += g;
            sumGX += g * xhat;
        }
        float meanG = block_sum(sumG, scratch) / hidden;
        float meanGX = block_sum(sumGX, scratch) / hidden;
        for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
            float xhat = (xr[i] - mean) * rstd, d = dyr[i];
            dxr[i] = rstd * (d * to_float(w[i]) - meanG - xhat * meanGX);
            pw[i] += d * xhat;
            pb[i] += d;
        }
    }
}

// y = x · rstd · w, rstd = 1/sqrt(mean(x²) + eps): dx = rstd · g − x · rstd³ · mean(g · x), g = dy · w.
// partials: [gridDim.x, hidden], the block's Σ dy · x · rstd.
template <typename W>
__device__ void rmsnorm_backward(const float* x, const W* w, const float* dy, float* dx, float* partials,
                                 int rows, int hidden, float eps) {
    __shared__ float scratch[32];
    float* pw = partials + (i64)blockIdx.x * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) pw[i] = 0.0f;
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + (i64)r * hidden;
        const float* dyr = dy + (i64)r * hidden;
        float* dxr = dx + (i64)r * hidden;
        float s = 0.0f, gx = 0.0f;
        for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
            s += xr[i] * xr[i];
            gx += dyr[i] * to_float(w[i]) * xr[i];
        }
        float rstd = 1.0f / sqrtf(block_sum(s, scratch) / hidden + eps);
        float meanGX = block_sum(gx, scratch) / hidden;
        float k = rstd * rstd * rstd * meanGX;
        for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
            float xi = xr[i], d = dyr[i];
            dxr[i] = rstd * d * to_float(w[i]) - xi * k;
            pw[i] += d * xi * rstd;
        }
    }
}

// out[c] += Σ_b partials[b · stride + c], c < cols: one thread per column, blocks in order.
extern "C" __global__ void reduce_partials_f32(const float* partials, float* out, int blocks, int cols, int stride) {
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int b = 0; b < blocks; b++) s += partials[(i64)b * stride + c];
        out[c] += s;
    }
}

"""#
        for t in CUDAKernelLibrarySources.floatTypes {
            out += """
            extern "C" __global__ void layernorm_backward_\(t.name)(const float* x, const \(t.cType)* w, const float* dy, float* dx, float* partials,
                                                                int rows, int hidden, float eps) {
                layernorm_backward(x, w, dy, dx, partials, rows, hidden, eps);
            }
            extern "C" __global__ void rmsnorm_backward_\(t.name)(const float* x, const \(t.cType)* w, const float* dy, float* dx, float* partials,
                                                              int rows, int hidden, float eps) {
                rmsnorm_backward(x, w, dy, dx, partials, rows, hidden, eps);
            }

            """
        }
        return out
    }
}

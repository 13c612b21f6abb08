/// Layer norm and RMS norm over the last dimension: one block per row, f32 activations, weights in
/// f32 / bf16 / f16. Each thread reads an element before writing it, so `y` may alias `x`.
///
/// `residual_layernorm_W_to_Y` / `residual_rmsnorm_W_to_Y` first add a residual into x (`x += r`, when r
/// is not null), then write the norm in Y (f32, bf16 or f16): a transformer block's residual add and
/// the next norm in one pass, with the norm already in the type of the next GEMM's operands.
enum NormKernels {
    static let kernels = CUDAKernelSource(family: "norm", source: source, functions: functions)

    static let functions = CUDAKernelLibrarySources.floatTypes.flatMap { ["layernorm_\($0.name)", "rmsnorm_\($0.name)"] }
        + CUDAKernelLibrarySources.floatTypes.flatMap { w in
            CUDAKernelLibrarySources.floatTypes.flatMap { y in ["residual_layernorm_\(w.name)_to_\(y.name)", "residual_rmsnorm_\(w.name)_to_\(y.name)"] }
        }

    static var source: String {
        var out = #"""
// Biased variance, as PyTorch: two passes (mean, then squared deviations) for accuracy.
template <typename W>
__device__ void layernorm(const float* x, const W* w, const W* b, float* y, int hidden, float eps) {
    __shared__ float scratch[32];
    const float* xr = x + (i64)blockIdx.x * hidden;
    float* yr = y + (i64)blockIdx.x * hidden;
    float s = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) s += xr[i];
    float mean = block_sum(s, scratch) / hidden;
    float v = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        float d = xr[i] - mean;
        v += d * d;
    }
    float rstd = 1.0f / sqrtf(block_sum(v, scratch) / hidden + eps);
    for (int i = threadIdx.x; i < hidden; i += blockDim.x)
        yr[i] = (xr[i] - mean) * rstd * to_float(w[i]) + to_float(b[i]);
}

template <typename W>
__device__ void rmsnorm(const float* x, const W* w, float* y, int hidden, float eps) {
    __shared__ float scratch[32];
    const float* xr = x + (i64)blockIdx.x * hidden;
    float* yr = y + (i64)blockIdx.x * hidden;
    float s = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) s += xr[i] * xr[i];
    float rstd = 1.0f / sqrtf(block_sum(s, scratch) / hidden + eps);
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) yr[i] = xr[i] * rstd * to_float(w[i]);
}

// x += r (r may be null), then y = layernorm(x) in Y. y must not alias x or r.
template <typename W, typename Y>
__device__ void residual_layernorm(float* x, const float* r, const W* w, const W* b, Y* y, int hidden, float eps) {
    __shared__ float scratch[32];
    float* xr = x + (i64)blockIdx.x * hidden;
    const float* rr = r ? r + (i64)blockIdx.x * hidden : nullptr;
    Y* yr = y + (i64)blockIdx.x * hidden;
    float s = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        float v = xr[i];
        if (rr) { v += rr[i]; xr[i] = v; }
        s += v;
    }
    float mean = block_sum(s, scratch) / hidden;
    float v = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        float d = xr[i] - mean;
        v += d * d;
    }
    float rstd = 1.0f / sqrtf(block_sum(v, scratch) / hidden + eps);
    for (int i = threadIdx.x; i < hidden; i += blockDim.x)
        yr[i] = from_float<Y>((xr[i] - mean) * rstd * to_float(w[i]) + to_float(b[i]));
}

template <typename W, typename Y>
__device__ void residual_rmsnorm(float* x, const float* r, const W* w, Y* y, int hidden, float eps) {
    __shared__ float scratch[32];
    float* xr = x + (i64)blockIdx.x * hidden;
    const float* rr = r ? r + (i64)blockIdx.x * hidden : nullptr;
    Y* yr = y + (i64)blockIdx.x * hidden;
    float s = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        float v = xr[i];
        if (rr) { v += rr[i]; xr[i] = v; }
        s += v * v;
    }
    float rstd = 1.0f / sqrtf(block_sum(s, scratch) / hidden + eps);
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) yr[i] = from_float<Y>(xr[i] * rstd * to_float(w[i]));
}

"""#
        for w in CUDAKernelLibrarySources.floatTypes {
            for y in CUDAKernelLibrarySources.floatTypes {
                out += """
                extern "C" __global__ void residual_layernorm_\(w.name)_to_\(y.name)(float* x, const float* r, const \(w.cType)* w, const \(w.cType)* b, \(y.cType)* y, int hidden, float eps) {
                    residual_layernorm(x, r, w, b, y, hidden, eps);
                }
                extern "C" __global__ void residual_rmsnorm_\(w.name)_to_\(y.name)(float* x, const float* r, const \(w.cType)* w, \(y.cType)* y, int hidden, float eps) {
                    residual_rmsnorm(x, r, w, y, hidden, eps);
                }

                """
            }
        }
        for t in CUDAKernelLibrarySources.floatTypes {
            out += """
            extern "C" __global__ void layernorm_\(t.name)(const float* x, const \(t.cType)* w, const \(t.cType)* b, float* y, int hidden, float eps) {
                layernorm(x, w, b, y, hidden, eps);
            }
            extern "C" __global__ void rmsnorm_\(t.name)(const float* x, const \(t.cType)* w, float* y, int hidden, float eps) {
                rmsnorm(x, w, y, hidden, eps);
            }

            """
        }
        return out
    }
}

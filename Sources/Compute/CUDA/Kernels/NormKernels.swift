/// Layer norm and RMS norm over the last dimension: one block per row, f32 activations, weights in
/// f32 / bf16 / f16. Each thread reads an element before writing it, so `y` may alias `x`.
enum NormKernels {
    static let kernels = CUDAKernelSource(family: "norm", source: source, functions: functions)

    static let functions = CUDAKernelLibrarySources.floatTypes.flatMap { ["layernorm_\($0.name)", "rmsnorm_\($0.name)"] }

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

"""#
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

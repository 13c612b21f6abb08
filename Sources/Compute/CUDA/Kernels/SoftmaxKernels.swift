/// Row-wise softmax and log-softmax of `scale · x` (scale = 1 / temperature; 1 for the plain op):
/// one block per row, max then sum of exponentials, in f32.
enum SoftmaxKernels {
    static let kernels = CUDAKernelSource(family: "softmax", source: source, functions: ["softmax_f32", "log_softmax_f32"])

    static let source = #"""
template <bool logarithm>
__device__ void softmax_rows(const float* x, float* y, int cols, float scale) {
    __shared__ float scratch[32];
    const float* xr = x + (i64)blockIdx.x * cols;
    float* yr = y + (i64)blockIdx.x * cols;
    float m = NEG_INF;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, xr[i] * scale);
    m = block_max(m, scratch);
    float s = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) s += expf(xr[i] * scale - m);
    s = block_sum(s, scratch);
    if (logarithm) {
        float logSum = logf(s);
        for (int i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = xr[i] * scale - m - logSum;
    } else {
        float inverse = 1.0f / s;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = expf(xr[i] * scale - m) * inverse;
    }
}

extern "C" __global__ void softmax_f32(const float* x, float* y, int cols, float scale) { softmax_rows<false>(x, y, cols, scale); }
extern "C" __global__ void log_softmax_f32(const float* x, float* y, int cols, float scale) { softmax_rows<true>(x, y, cols, scale); }
"""#
}

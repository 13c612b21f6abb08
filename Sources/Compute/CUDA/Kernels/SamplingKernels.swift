/// Token choice on the device: greedy (`argmax_f32`, lowest index on ties) and sampling from a row of
/// probabilities by inverse CDF with one uniform number per row (`sample_f32`). One block per row.
enum SamplingKernels {
    static let kernels = CUDAKernelSource(family: "sampling", source: source, functions: ["argmax_f32", "sample_f32"])
    /// Threads per block of both kernels (`sample_f32` keeps one partial sum per thread in shared memory).
    static let threads = 256

    static var source: String {
        "#define SAMPLING_THREADS \(threads)\n" + #"""
__device__ __forceinline__ void better(float& v, int& i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) { v = ov; i = oi; }
}

extern "C" __global__ void argmax_f32(const float* x, int* out, int cols) {
    __shared__ float values[32];
    __shared__ int indices[32];
    const float* xr = x + (i64)blockIdx.x * cols;
    float v = NEG_INF;
    int index = 0x7fffffff;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) better(v, index, xr[i], i);
    for (int o = 16; o > 0; o >>= 1) better(v, index, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, index, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { values[warp] = v; indices[warp] = index; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) better(v, index, values[w], indices[w]);
        out[blockIdx.x] = index == 0x7fffffff ? 0 : index;
    }
}

// probabilities: [rows, cols] (need not be normalised); uniforms: [rows] in [0, 1); out: [rows].
// Each thread sums a contiguous chunk; thread 0 finds the chunk where u * total falls; that chunk's
// thread finds the element. Rounding at the very end falls back to the last non-zero element.
extern "C" __global__ void sample_f32(const float* probabilities, const float* uniforms, int* out, int cols) {
    __shared__ float chunkSums[SAMPLING_THREADS];
    __shared__ int chosenChunk;
    __shared__ float remaining;
    const float* p = probabilities + (i64)blockIdx.x * cols;
    int chunk = (cols + blockDim.x - 1) / blockDim.x;
    int begin = min(cols, (int)threadIdx.x * chunk), end = min(cols, begin + chunk);
    float s = 0.0f;
    for (int i = begin; i < end; i++) s += p[i];
    chunkSums[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int t = 0; t < (int)blockDim.x; t++) total += chunkSums[t];
        float target = uniforms[blockIdx.x] * total, before = 0.0f;
        int pick = -1, lastNonZero = 0;
        for (int t = 0; t < (int)blockDim.x; t++) {
            if (chunkSums[t] > 0.0f) lastNonZero = t;
            if (pick < 0 && chunkSums[t] > 0.0f && before + chunkSums[t] > target) { pick = t; break; }
            before += chunkSums[t];
        }
        if (pick < 0) { pick = lastNonZero; before = total - chunkSums[pick]; }
        chosenChunk = pick;
        remaining = target - before;
    }
    __syncthreads();
    if ((int)threadIdx.x == chosenChunk) {
        float acc = 0.0f;
        int last = begin;
        for (int i = begin; i < end; i++) {
            if (p[i] > 0.0f) last = i;
            acc += p[i];
            if (p[i] > 0.0f && acc > remaining) { out[blockIdx.x] = i; return; }
        }
        out[blockIdx.x] = last;
    }
}
"""#
    }
}

/// Token choice on the device, one block per row: greedy (`argmax_f32`, lowest index on ties), sampling
/// from a row of probabilities by inverse CDF with one uniform number per row (`sample_f32`), and
/// sampling from a row of logits with temperature, top-k and top-p (`sample_logits_f32`).
///
/// `sample_logits_f32` truncates without sorting: it finds the top-k and top-p thresholds by a binary
/// search over the bit pattern of the probabilities (non-negative floats order as their bits do), 31
/// counting passes each, then draws by inverse CDF over the kept tokens in index order. Every reduction
/// has a fixed order and no float atomics, so tensor-parallel ranks pick the same token from the same
/// logits. It samples the same distribution as the host `Sampler` but not the same token for a given
/// uniform: the host walks the kept tokens in order of probability when it truncates.
enum SamplingKernels {
    static let kernels = CUDAKernelSource(family: "sampling", source: source,
                                          functions: ["argmax_f32", "greedy_f32", "greedy_split_f32", "sample_f32", "sample_logits_f32"])
    /// Threads per block of `argmax_f32` and `sample_f32` (`sample_f32` keeps one partial sum per thread
    /// in shared memory).
    static let threads = 256
    /// Threads per block of `sample_logits_f32`: a whole row is one block, and its ~60 passes over the row
    /// when truncating want every thread of an SM.
    static let logitThreads = 1024

    /// Blocks per row of `greedy_split_f32` for `rows` rows of `cols` logits; 1 (one block per row,
    /// `greedy_f32`) once the rows alone fill the GPU or the row is short.
    static func greedyChunks(rows: Int, cols: Int, multiprocessors: Int) -> Int {
        guard rows < multiprocessors / 2, cols >= 8 * threads else { return 1 }
        return min(32, (2 * multiprocessors + rows - 1) / rows, cols / (4 * threads))
    }

    static var source: String {
        "#define SAMPLING_THREADS \(threads)\n#define SAMPLE_LOGITS_THREADS \(logitThreads)\n" + #"""
__device__ __forceinline__ void better(float& v, int& i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) { v = ov; i = oi; }
}

// The block's best (v, index) by `better`, on every thread. values and indices: 32 each, in shared memory.
__device__ void block_best(float& v, int& index, float* values, int* indices) {
    for (int o = 16; o > 0; o >>= 1) better(v, index, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, index, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { values[warp] = v; indices[warp] = index; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) better(v, index, values[w], indices[w]);
        values[0] = v;
        indices[0] = index;
    }
    __syncthreads();
    v = values[0];
    index = indices[0];
}

// Over xr[begin, end): the largest value m at its lowest index (0x7fffffff when the range is empty or
// all -inf), and the sum of exp(x - m), on every thread. scratch: 32 floats for block_sum.
__device__ void range_best_and_sum(const float* xr, int begin, int end, float& m, int& index, float& sum,
                                   float* values, int* indices, float* scratch) {
    m = NEG_INF;
    index = 0x7fffffff;
    for (int i = begin + threadIdx.x; i < end; i += blockDim.x) better(m, index, xr[i], i);
    block_best(m, index, values, indices);
    float s = 0.0f;
    if (m != NEG_INF) for (int i = begin + threadIdx.x; i < end; i += blockDim.x) s += expf(xr[i] - m);
    sum = block_sum(s, scratch);
}

extern "C" __global__ void argmax_f32(const float* x, int* out, int cols) {
    __shared__ float values[32];
    __shared__ int indices[32];
    const float* xr = x + (i64)blockIdx.x * cols;
    float v = NEG_INF;
    int index = 0x7fffffff;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) better(v, index, xr[i], i);
    block_best(v, index, values, indices);
    if (threadIdx.x == 0) out[blockIdx.x] = index == 0x7fffffff ? 0 : index;
}

// Greedy choice per row (one block per row): the argmax (lowest index on ties) and its log-softmax value,
// out[2r] = the index's bits, out[2r + 1] = x[index] - max - log(sum exp(x - max)): one download of 2N
// numbers instead of an argmax and a log-softmax of the whole [N, V] logits. Non-finite logits give a
// NaN log-probability, which the caller reports.
extern "C" __global__ void greedy_f32(const float* x, float* out, int cols) {
    __shared__ float values[32], scratch[32];
    __shared__ int indices[32];
    const float* xr = x + (i64)blockIdx.x * cols;
    float m, sum;
    int index;
    range_best_and_sum(xr, 0, cols, m, index, sum, values, indices, scratch);
    if (threadIdx.x == 0) {
        int chosen = index == 0x7fffffff ? 0 : index;
        out[2 * (i64)blockIdx.x] = __int_as_float(chosen);
        out[2 * (i64)blockIdx.x + 1] = xr[chosen] - m - logf(sum);
    }
}

// greedy_f32 for a few rows: each row split over gridDim.y blocks of 256 threads, each block reducing its
// chunk to (max, its lowest index, sum of exp(x - max)) in partials[row][chunk]; the last block of a row to
// finish (an arrival count, which it resets to 0 for the next launch) merges the chunks in index order.
// A few rows then read their logits with many SMs instead of one each. Same outputs as greedy_f32 (the
// sum is added in another order).
extern "C" __global__ void greedy_split_f32(const float* x, float* partials, int* counters, float* out, int cols) {
    __shared__ float values[32], scratch[32];
    __shared__ int indices[32];
    __shared__ int isLast;
    int row = blockIdx.x, chunk = blockIdx.y, chunks = gridDim.y;
    int per = (cols + chunks - 1) / chunks;
    int begin = min(cols, chunk * per), end = min(cols, begin + per);
    const float* xr = x + (i64)row * cols;
    float m, sum;
    int index;
    range_best_and_sum(xr, begin, end, m, index, sum, values, indices, scratch);
    float* slot = partials + ((i64)row * chunks + chunk) * 3;
    if (threadIdx.x == 0) {
        slot[0] = m;
        slot[1] = __int_as_float(index);
        slot[2] = sum;
        __threadfence();
        isLast = atomicAdd(counters + row, 1) == chunks - 1;
        if (isLast) counters[row] = 0;
    }
    __syncthreads();
    if (!isLast || threadIdx.x != 0) return;
    __threadfence();
    const float* p = partials + (i64)row * chunks * 3;
    float M = NEG_INF;
    int best = 0x7fffffff;
    for (int c = 0; c < chunks; c++) better(M, best, load_cg(p + 3 * c), __float_as_int(load_cg(p + 3 * c + 1)));
    float total = 0.0f;
    for (int c = 0; c < chunks; c++) {
        float cm = load_cg(p + 3 * c);
        if (cm != NEG_INF) total += load_cg(p + 3 * c + 2) * expf(cm - M);
    }
    int chosen = best == 0x7fffffff ? 0 : best;
    out[2 * (i64)row] = __int_as_float(chosen);
    out[2 * (i64)row + 1] = xr[chosen] - M - logf(total);
}

// Sum of an int over the block (blockDim.x a multiple of 32); every thread gets it. As block_sum.
__device__ int block_count(int v, int* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Kept by the truncation: a non-zero probability at or above the threshold (a float's bit pattern;
// p >= 0, so comparing bits as ints compares the floats).
__device__ __forceinline__ bool kept(float p, int threshold) { return p > 0.0f && __float_as_int(p) >= threshold; }

// Inverse CDF in index order over the kept elements of the row p, with u in [0, 1): each thread sums a
// contiguous chunk, thread 0 finds the chunk where u * (kept mass) falls, that chunk's thread finds the
// element. Rounding at the very end falls back to the last kept element of the chunk. Returns the element
// on the thread that found it, -1 on the others. chunkSums holds blockDim.x floats.
__device__ int draw_kept(const float* p, int cols, float u, int threshold, float* chunkSums, int* chosenChunk, float* remaining) {
    int chunk = (cols + blockDim.x - 1) / blockDim.x;
    int begin = min(cols, (int)threadIdx.x * chunk), end = min(cols, begin + chunk);
    float chunkMass = 0.0f;
    for (int i = begin; i < end; i++) if (kept(p[i], threshold)) chunkMass += p[i];
    chunkSums[threadIdx.x] = chunkMass;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int t = 0; t < (int)blockDim.x; t++) total += chunkSums[t];
        float target = u * total, before = 0.0f;
        int pick = -1, lastNonZero = 0;
        for (int t = 0; t < (int)blockDim.x; t++) {
            if (chunkSums[t] > 0.0f) lastNonZero = t;
            if (chunkSums[t] > 0.0f && before + chunkSums[t] > target) { pick = t; break; }
            before += chunkSums[t];
        }
        if (pick < 0) { pick = lastNonZero; before = total - chunkSums[pick]; }
        *chosenChunk = pick;
        *remaining = target - before;
    }
    __syncthreads();
    if ((int)threadIdx.x != *chosenChunk) return -1;
    float acc = 0.0f;
    int last = begin;
    for (int i = begin; i < end; i++) {
        if (!kept(p[i], threshold)) continue;
        last = i;
        acc += p[i];
        if (acc > *remaining) return i;
    }
    return last;
}

// probabilities: [rows, cols] (need not be normalised); uniforms: [rows] in [0, 1); out: [rows]. Every
// non-zero probability is kept (threshold 0).
extern "C" __global__ void sample_f32(const float* probabilities, const float* uniforms, int* out, int cols) {
    __shared__ float chunkSums[SAMPLING_THREADS];
    __shared__ int chosenChunk;
    __shared__ float remaining;
    int token = draw_kept(probabilities + (i64)blockIdx.x * cols, cols, uniforms[blockIdx.x], 0, chunkSums, &chosenChunk, &remaining);
    if (token >= 0) out[blockIdx.x] = token;
}

// Samples one token per row of logits: p = exp((l - max) / T), truncated to the top-k tokens (topK in
// 1..<cols, else off), then to the smallest most-likely set holding topP of their mass (topP < 1, else
// off), drawn by inverse CDF with uniforms[row] in [0, 1) over the kept tokens in index order.
// logprobs[row] is the raw log-probability of the token: log-softmax of the unmodified logits (vLLM's
// default). logits: [rows, cols]; uniforms, tokens, logprobs: [rows]; scratch: [rows, cols] holds p, so
// the passes after the first read it instead of recomputing exp.
//
// Truncation keeps everything at or above a threshold, found by a bitwise binary search over the bit
// pattern: the top-k threshold is the largest t with count(bits(p) >= t) >= k, which is the k-th largest
// p; ties with it are all kept, so exact ties may keep more than k (the host `Sampler` sorts and keeps
// exactly k). The top-p threshold is the largest t with mass(p >= t) >= topP * (top-k mass).
// Deterministic: each thread's partial sums run in a fixed order and the block reductions are fixed
// trees, so every GPU picks the same token from the same logits and uniform.
extern "C" __global__ void __launch_bounds__(SAMPLE_LOGITS_THREADS)
sample_logits_f32(const float* logits, const float* uniforms, int* tokens, float* logprobs, float* scratch,
                  int cols, float invTemperature, int topK, float topP) {
    __shared__ float reduction[32];
    __shared__ int counts[32];
    __shared__ float chunkSums[SAMPLE_LOGITS_THREADS];
    __shared__ int chosenChunk;
    __shared__ float remaining;
    const float* l = logits + (i64)blockIdx.x * cols;
    float* p = scratch + (i64)blockIdx.x * cols;

    float m = NEG_INF;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, l[i]);
    m = block_max(m, reduction);
    float s = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float d = l[i] - m;
        s += expf(d);
        p[i] = expf(d * invTemperature);
    }
    float rawSum = block_sum(s, reduction);  // its barriers also publish p to the whole block

    // Every thread computes the same counts and sums, so the thresholds are uniform across the block.
    int threshold = 0;
    if (topK > 0 && topK < cols) {
        for (int bit = 30; bit >= 0; bit--) {
            int candidate = threshold | (1 << bit);
            int c = 0;
            for (int i = threadIdx.x; i < cols; i += blockDim.x) c += __float_as_int(p[i]) >= candidate;
            if (block_count(c, counts) >= topK) threshold = candidate;
        }
    }
    if (topP < 1.0f) {
        float topKMass = 0.0f;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) if (__float_as_int(p[i]) >= threshold) topKMass += p[i];
        float target = topP * block_sum(topKMass, reduction);
        int prefix = 0;
        for (int bit = 30; bit >= 0; bit--) {
            int candidate = prefix | (1 << bit), bound = max(candidate, threshold);
            float mass = 0.0f;
            for (int i = threadIdx.x; i < cols; i += blockDim.x) if (__float_as_int(p[i]) >= bound) mass += p[i];
            if (block_sum(mass, reduction) >= target) prefix = candidate;
        }
        threshold = max(threshold, prefix);
    }
    // The row's maximum has p = exp(0) = 1: keep it whatever the rounding (topP tiny, say).
    threshold = min(threshold, __float_as_int(1.0f));

    int token = draw_kept(p, cols, uniforms[blockIdx.x], threshold, chunkSums, &chosenChunk, &remaining);
    if (token >= 0) {
        tokens[blockIdx.x] = token;
        logprobs[blockIdx.x] = l[token] - m - logf(rawSum);
    }
}
"""#
    }
}

/// Log-probabilities of chosen tokens and their backward, a block per row of logits [R, V] (f32).
/// One pass over the vocabulary with an online softmax: each thread keeps a running max m, Σ e^(x−m)
/// and Σ e^(x−m)·x (for the entropy), rescaled when the max grows; warps then the block merge them.
enum TrainingLogProbKernels {
    static let kernels = CUDAKernelSource(family: "training_logprobs", source: source, functions: functions)

    static let functions = ["token_logprobs_f32", "token_logprobs_backward_f32"]

    static let source = #"""
struct OnlineSoftmax {
    float m, s, sx;  // running max, Σ e^(x−m), Σ e^(x−m)·x
};

__device__ __forceinline__ void online_add(OnlineSoftmax& a, float x) {
    if (x == NEG_INF) return;  // a masked logit: probability 0
    if (x > a.m) {
        float c = expf(a.m - x);  // 0 while a.m is −inf
        a.s = a.s * c + 1.0f;
        a.sx = a.sx * c + x;
        a.m = x;
    } else {
        float e = expf(x - a.m);
        a.s += e;
        a.sx += e * x;
    }
}

__device__ __forceinline__ OnlineSoftmax online_merge(OnlineSoftmax a, OnlineSoftmax b) {
    float m = fmaxf(a.m, b.m);
    if (m == NEG_INF) return a;
    float ca = expf(a.m - m), cb = expf(b.m - m);
    OnlineSoftmax r;
    r.m = m;
    r.s = a.s * ca + b.s * cb;
    r.sx = a.sx * ca + b.sx * cb;
    return r;
}

// The row's (m, s, sx) over all its logits, in every thread of the block.
__device__ OnlineSoftmax row_softmax(const float* row, int V) {
    __shared__ OnlineSoftmax warps[32];
    OnlineSoftmax a = {NEG_INF, 0.0f, 0.0f};
    for (int i = threadIdx.x; i < V; i += blockDim.x) online_add(a, row[i]);
    for (int o = 16; o > 0; o >>= 1) {
        OnlineSoftmax b;
        b.m = __shfl_xor_sync(0xffffffffu, a.m, o);
        b.s = __shfl_xor_sync(0xffffffffu, a.s, o);
        b.sx = __shfl_xor_sync(0xffffffffu, a.sx, o);
        a = online_merge(a, b);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) warps[warp] = a;
    __syncthreads();
    OnlineSoftmax r = {NEG_INF, 0.0f, 0.0f};
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) r = online_merge(r, warps[w]);
    return r;
}

// logProb[r] = x[t] − logsumexp(x); entropy[r] (when not null) = logsumexp(x) − Σ p·x.
extern "C" __global__ void token_logprobs_f32(const float* logits, const int* targets, float* logProb, float* entropy, int V) {
    const float* row = logits + (i64)blockIdx.x * V;
    OnlineSoftmax a = row_softmax(row, V);
    if (threadIdx.x == 0) {
        float lse = a.m + logf(a.s);
        logProb[blockIdx.x] = row[targets[blockIdx.x]] - lse;
        if (entropy) entropy[blockIdx.x] = lse - a.sx / a.s;
    }
}

// In place: logits[r, v] = dLogProb[r] · (onehot(targets[r])[v] − softmax(logits[r])[v]); zeros when
// dLogProb[r] is 0. Every thread reads all its logits (for the softmax) before any is overwritten.
// copy (optional, [R, V] bf16): the result rounded to bf16, for the bf16 GEMMs that read it next.
extern "C" __global__ void token_logprobs_backward_f32(float* logits, const int* targets, const float* dLogProb, bf16* copy, int V) {
    float* row = logits + (i64)blockIdx.x * V;
    bf16* copyRow = copy ? copy + (i64)blockIdx.x * V : 0;
    float g = dLogProb[blockIdx.x];
    if (g == 0.0f) {  // the same for the whole block
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            row[i] = 0.0f;
            if (copyRow) copyRow[i] = from_float<bf16>(0.0f);
        }
        return;
    }
    OnlineSoftmax a = row_softmax(row, V);
    float lse = a.m + logf(a.s);
    int target = targets[blockIdx.x];
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float p = expf(row[i] - lse);
        float d = g * ((i == target ? 1.0f : 0.0f) - p);
        row[i] = d;
        if (copyRow) copyRow[i] = from_float<bf16>(d);
    }
}
"""#
}

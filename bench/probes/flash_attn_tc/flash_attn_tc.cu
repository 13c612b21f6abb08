// Standalone check and timing of the tensor-core training attention kernels (TrainingKernelsAttentionTC.swift)
// against the f32 kernels (TrainingKernelsAttention.swift), on the exact CUDA C of the Swift sources:
//   python3 extract_kernels.py && nvcc -O3 -arch=sm_90 -o /tmp/fa flash_attn_tc.cu && /tmp/fa
// (FATC_SOURCE=path python3 extract_kernels.py takes the tensor-core kernels from another copy of the Swift
// file, to try a change.)
// References: "R16" = the f32 kernels on q, k, v, dOut rounded to bf16 (what the tensor-core kernels do
// to their inputs: the difference left is P and dS rounded to bf16 and the order of sums); "R32" = the
// f32 kernels on the f32 inputs (what f32 training computes).
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <vector>
#include <string>
#include "kernels.cuh"

#define CHECK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { \
    fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); exit(1); } } while (0)

typedef void (*Forward)(const float*, const float*, const float*, float*, float*, int, int, int, int, float);
typedef void (*BackwardDQ)(const float*, const float*, const float*, const float*, const float*, const float*, float*,
                           int, int, int, int, float);
typedef void (*BackwardDKDV)(const float*, const float*, const float*, const float*, const float*, const float*, float*,
                             float*, int, int, int, int, float);

// The instances of TrainingKernelsAttentionTC.swift with their tiles (keys per forward tile, keys per dQ tile,
// queries per dK/dV tile), as its FATC_VARIANT lines and TrainingAttentionTCKernels.variants say.
struct TC { const char* name; int maxD, fbk, bk, bq; Forward fwd; BackwardDQ dq; BackwardDKDV dkdv; };
static TC tcVariants[] = {
    {"d64", 64, 64, 32, 32, flash_attention_tc_forward_d64, flash_attention_tc_backward_dq_d64, flash_attention_tc_backward_dkdv_d64},
    {"d128", 128, 64, 32, 32, flash_attention_tc_forward_d128, flash_attention_tc_backward_dq_d128, flash_attention_tc_backward_dkdv_d128},
};
static TC* tcFor(const char* name) {
    for (auto& v : tcVariants) if (std::string(v.name) == name) return &v;
    return nullptr;
}

struct Problem {
    int B, T, H, KVH, D;
    float scale() const { return 1.0f / sqrtf((float)D); }
    size_t qCount() const { return (size_t)B * T * H * D; }
    size_t kCount() const { return (size_t)B * T * KVH * D; }
    size_t rows() const { return (size_t)B * T * H; }
};

struct Buffers {
    float *q, *k, *v, *dOut, *out, *lse, *delta, *dq, *dk, *dv;
    Buffers(const Problem& p) {
        CHECK(cudaMalloc(&q, p.qCount() * 4)); CHECK(cudaMalloc(&k, p.kCount() * 4)); CHECK(cudaMalloc(&v, p.kCount() * 4));
        CHECK(cudaMalloc(&dOut, p.qCount() * 4)); CHECK(cudaMalloc(&out, p.qCount() * 4)); CHECK(cudaMalloc(&lse, p.rows() * 4));
        CHECK(cudaMalloc(&delta, p.rows() * 4)); CHECK(cudaMalloc(&dq, p.qCount() * 4)); CHECK(cudaMalloc(&dk, p.kCount() * 4));
        CHECK(cudaMalloc(&dv, p.kCount() * 4));
    }
    ~Buffers() { for (float* x : {q, k, v, dOut, out, lse, delta, dq, dk, dv}) cudaFree(x); }
};

static void f32Forward(const Problem& p, Buffers& b) {
    dim3 grid((p.T + 15) / 16, p.H, p.B);
    if (p.D <= 64) flash_attention_forward_d64_f32<<<grid, 128>>>(b.q, b.k, b.v, b.out, b.lse, p.T, p.H, p.KVH, p.D, p.scale());
    else flash_attention_forward_d128_f32<<<grid, 128>>>(b.q, b.k, b.v, b.out, b.lse, p.T, p.H, p.KVH, p.D, p.scale());
    CHECK(cudaGetLastError());
}
static void delta(const Problem& p, Buffers& b) {
    size_t rows = p.rows();
    attention_backward_delta_f32<<<(unsigned)std::min<size_t>((rows + 7) / 8, 1 << 20), 256>>>(b.out, b.dOut, b.delta, rows, p.D);
    CHECK(cudaGetLastError());
}
static void f32Backward(const Problem& p, Buffers& b) {
    delta(p, b);
    int maxD = p.D <= 64 ? 64 : 128;
    int tiles = 2 * 16 * maxD + 2 * 32 * (maxD + 1);
    dim3 qgrid((p.T + 15) / 16, p.H, p.B), kgrid((p.T + 15) / 16, p.KVH, p.B);
    auto dq = p.D <= 64 ? flash_attention_backward_dq_d64_f32 : flash_attention_backward_dq_d128_f32;
    auto dkdv = p.D <= 64 ? flash_attention_backward_dkdv_d64_f32 : flash_attention_backward_dkdv_d128_f32;
    CHECK(cudaFuncSetAttribute(dq, cudaFuncAttributeMaxDynamicSharedMemorySize, tiles * 4));
    CHECK(cudaFuncSetAttribute(dkdv, cudaFuncAttributeMaxDynamicSharedMemorySize, (tiles + 64) * 4));
    dq<<<qgrid, 128, tiles * 4>>>(b.q, b.k, b.v, b.dOut, b.lse, b.delta, b.dq, p.T, p.H, p.KVH, p.D, p.scale());
    CHECK(cudaGetLastError());
    dkdv<<<kgrid, 128, (tiles + 64) * 4>>>(b.q, b.k, b.v, b.dOut, b.lse, b.delta, b.dk, b.dv, p.T, p.H, p.KVH, p.D, p.scale());
    CHECK(cudaGetLastError());
}

static int tcShared(const TC& v, int which) {  // as TrainingAttentionTCKernels.variant(headDim:)
    int row = 2 * (v.maxD + 8);
    if (which == 0) return (64 + 2 * v.fbk) * row;
    if (which == 1) return (2 * 64 + 2 * v.bk) * row;
    return (2 * 64 + 2 * v.bq) * row + 2 * v.bq * 4;
}
static void tcForward(const TC& v, const Problem& p, Buffers& b) {
    CHECK(cudaFuncSetAttribute(v.fwd, cudaFuncAttributeMaxDynamicSharedMemorySize, tcShared(v, 0)));
    dim3 grid((p.T + 63) / 64, p.H, p.B);
    v.fwd<<<grid, 128, tcShared(v, 0)>>>(b.q, b.k, b.v, b.out, b.lse, p.T, p.H, p.KVH, p.D, p.scale());
    CHECK(cudaGetLastError());
}
static void tcBackward(const TC& v, const Problem& p, Buffers& b) {
    delta(p, b);
    CHECK(cudaFuncSetAttribute(v.dq, cudaFuncAttributeMaxDynamicSharedMemorySize, tcShared(v, 1)));
    CHECK(cudaFuncSetAttribute(v.dkdv, cudaFuncAttributeMaxDynamicSharedMemorySize, tcShared(v, 2)));
    dim3 qgrid((p.T + 63) / 64, p.H, p.B), kgrid((p.T + 63) / 64, p.KVH, p.B);
    v.dq<<<qgrid, 128, tcShared(v, 1)>>>(b.q, b.k, b.v, b.dOut, b.lse, b.delta, b.dq, p.T, p.H, p.KVH, p.D, p.scale());
    CHECK(cudaGetLastError());
    v.dkdv<<<kgrid, 128, tcShared(v, 2)>>>(b.q, b.k, b.v, b.dOut, b.lse, b.delta, b.dk, b.dv, p.T, p.H, p.KVH, p.D, p.scale());
    CHECK(cudaGetLastError());
}

// ---- host data ----
static unsigned long long rngState = 0x9E3779B97F4A7C15ull;
static float uniform() {
    rngState = rngState * 6364136223846793005ull + 1442695040888963407ull;
    return ((rngState >> 40) + 0.5f) / 16777216.0f;
}
static float normal() { return sqrtf(-2.0f * logf(uniform())) * cosf(6.2831853f * uniform()); }
static std::vector<float> randomVector(size_t n, float sigma) {
    std::vector<float> x(n);
    for (auto& e : x) e = sigma * normal();
    return x;
}
static float bf16Round(float x) {  // round to nearest even, as the kernels' cvt.rn.bf16x2
    unsigned u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}
static std::vector<float> rounded(const std::vector<float>& x) {
    std::vector<float> y(x.size());
    for (size_t i = 0; i < x.size(); i++) y[i] = bf16Round(x[i]);
    return y;
}
static void upload(float* d, const std::vector<float>& h) { CHECK(cudaMemcpy(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice)); }
static std::vector<float> download(const float* d, size_t n) {
    std::vector<float> h(n);
    CHECK(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost));
    return h;
}

struct Error { double relL2, relMax; bool finite; };
static Error compare(const std::vector<float>& a, const std::vector<float>& ref) {
    double num = 0, den = 0, maxDiff = 0, maxRef = 0;
    bool finite = true;
    for (size_t i = 0; i < a.size(); i++) {
        if (!std::isfinite(a[i])) finite = false;
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        maxDiff = std::max(maxDiff, fabs(d));
        maxRef = std::max(maxRef, fabs((double)ref[i]));
    }
    return {sqrt(num / std::max(den, 1e-30)), maxDiff / std::max(maxRef, 1e-30), finite};
}

struct Outputs { std::vector<float> out, lse, dq, dk, dv; };
static Outputs download(const Problem& p, Buffers& b) {
    return {download(b.out, p.qCount()), download(b.lse, p.rows()), download(b.dq, p.qCount()), download(b.dk, p.kCount()),
            download(b.dv, p.kCount())};
}

static int failures = 0;
static void report(const char* what, const char* tensor, Error e, double bound) {
    bool ok = e.finite && e.relL2 < bound;
    if (!ok) failures++;
    printf("  %-34s %-4s relL2 %.2e  max|diff|/max|ref| %.2e  %s\n", what, tensor, e.relL2, e.relMax, ok ? "ok" : "FAIL");
}

static void check(const TC& v, Problem p) {
    printf("check %s: B %d T %d heads %d kvHeads %d D %d\n", v.name, p.B, p.T, p.H, p.KVH, p.D);
    auto q = randomVector(p.qCount(), 1.5f), k = randomVector(p.kCount(), 1.5f), val = randomVector(p.kCount(), 1.0f),
         dOut = randomVector(p.qCount(), 1.0f);
    Buffers b(p);
    // R32: the f32 kernels on f32 inputs.
    upload(b.q, q); upload(b.k, k); upload(b.v, val); upload(b.dOut, dOut);
    f32Forward(p, b); f32Backward(p, b);
    Outputs r32 = download(p, b);
    // R16: the f32 kernels on bf16-rounded inputs.
    upload(b.q, rounded(q)); upload(b.k, rounded(k)); upload(b.v, rounded(val)); upload(b.dOut, rounded(dOut));
    f32Forward(p, b); f32Backward(p, b);
    Outputs r16 = download(p, b);
    // Tensor cores on f32 inputs: the forward alone, the backward from R16's out and lse, then the whole pipeline.
    upload(b.q, q); upload(b.k, k); upload(b.v, val); upload(b.dOut, dOut);
    tcForward(v, p, b);
    Outputs tcf = download(p, b);
    upload(b.out, r16.out); upload(b.lse, r16.lse);
    tcBackward(v, p, b);
    Outputs tcb = download(p, b);
    tcForward(v, p, b); tcBackward(v, p, b);
    Outputs tc = download(p, b);
    CHECK(cudaDeviceSynchronize());
    report("tc forward vs R16", "out", compare(tcf.out, r16.out), 1e-2);
    report("tc forward vs R16", "lse", compare(tcf.lse, r16.lse), 1e-3);
    if (p.T == 1) {  // one key: dq = dk = 0 exactly, and what is left is rounding noise, not relative to anything
        report("tc forward vs R32", "out", compare(tc.out, r32.out), 3e-2);
        report("tc backward vs R32", "dv", compare(tc.dv, r32.dv), 5e-2);
        return;
    }
    report("tc backward (R16 out, lse) vs R16", "dq", compare(tcb.dq, r16.dq), 2e-2);
    report("tc backward (R16 out, lse) vs R16", "dk", compare(tcb.dk, r16.dk), 2e-2);
    report("tc backward (R16 out, lse) vs R16", "dv", compare(tcb.dv, r16.dv), 2e-2);
    report("R16 vs R32 (input rounding alone)", "out", compare(r16.out, r32.out), 1);
    report("R16 vs R32", "dq", compare(r16.dq, r32.dq), 1);
    report("R16 vs R32", "dk", compare(r16.dk, r32.dk), 1);
    report("R16 vs R32", "dv", compare(r16.dv, r32.dv), 1);
    report("tc pipeline vs R32", "out", compare(tc.out, r32.out), 3e-2);
    report("tc pipeline vs R32", "lse", compare(tc.lse, r32.lse), 1e-2);
    report("tc pipeline vs R32", "dq", compare(tc.dq, r32.dq), 5e-2);
    report("tc pipeline vs R32", "dk", compare(tc.dk, r32.dk), 5e-2);
    report("tc pipeline vs R32", "dv", compare(tc.dv, r32.dv), 5e-2);
}

template <typename F> static float timeMs(F f, int iterations = 20) {
    f();
    CHECK(cudaDeviceSynchronize());
    cudaEvent_t start, stop;
    cudaEventCreate(&start); cudaEventCreate(&stop);
    cudaEventRecord(start);
    for (int i = 0; i < iterations; i++) f();
    cudaEventRecord(stop);
    CHECK(cudaEventSynchronize(stop));
    float ms;
    cudaEventElapsedTime(&ms, start, stop);
    return ms / iterations;
}

static void bench(Problem p, const char* const* names, int count) {
    Buffers b(p);
    upload(b.q, randomVector(p.qCount(), 1.0f)); upload(b.k, randomVector(p.kCount(), 1.0f));
    upload(b.v, randomVector(p.kCount(), 1.0f)); upload(b.dOut, randomVector(p.qCount(), 1.0f));
    double flops = 4.0 * p.B * p.H * (double)p.T * p.T * p.D / 2;  // causal: half of the two products
    printf("bench B %d T %d heads %d kvHeads %d D %d (ms per call; TFLOP/s counting causal halves, bwd as 2.5x fwd)\n",
           p.B, p.T, p.H, p.KVH, p.D);
    float f = timeMs([&] { f32Forward(p, b); }), bw = timeMs([&] { f32Backward(p, b); });
    printf("  %-10s fwd %8.3f  bwd %8.3f  fwd %6.1f TF/s  bwd %6.1f TF/s\n", "f32", f, bw, flops / f / 1e9, 2.5 * flops / bw / 1e9);
    for (int i = 0; i < count; i++) {
        TC* v = tcFor(names[i]);
        float tf = timeMs([&] { tcForward(*v, p, b); }), tb = timeMs([&] { tcBackward(*v, p, b); });
        printf("  tc %-7s fwd %8.3f  bwd %8.3f  fwd %6.1f TF/s  bwd %6.1f TF/s\n", v->name, tf, tb, flops / tf / 1e9,
               2.5 * flops / tb / 1e9);
    }
}

int main() {
    check(*tcFor("d64"), {2, 512, 12, 12, 64});
    check(*tcFor("d64"), {2, 300, 12, 4, 64});
    check(*tcFor("d64"), {1, 1, 2, 1, 64});
    check(*tcFor("d64"), {2, 77, 4, 2, 40});    // head dim below the instance's, not a multiple of 16
    check(*tcFor("d128"), {2, 512, 12, 4, 128});
    check(*tcFor("d128"), {2, 300, 12, 12, 128});
    check(*tcFor("d128"), {2, 130, 6, 3, 80});
    check(*tcFor("d128"), {1, 65, 4, 4, 66});   // D % 4 != 0: scalar loads
    printf("%s: %d failed comparisons\n", failures ? "FAILED" : "PASSED", failures);
    const char* d64[] = {"d64"};
    const char* d128[] = {"d128"};
    bench({16, 512, 12, 12, 64}, d64, 1);   // opt-125m, bench train's shape
    bench({16, 512, 12, 4, 128}, d128, 1);
    bench({4, 2048, 16, 16, 128}, d128, 1);
    return failures ? 1 : 0;
}

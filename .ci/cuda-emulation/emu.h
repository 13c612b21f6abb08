// A minimal CUDA emulation on the CPU, to run the training kernels without a GPU (no performance meaning):
// each CUDA thread of a block is a std::thread, blocks run one after another, __shared__ is a static,
// __syncthreads a block barrier, warp shuffles go through a per-warp slot array between two warp
// barriers. Enough for kernels whose shuffles are warp-convergent (all of ours). See run.sh.
// Minimal CUDA emulation: each CUDA thread of a block is a std::thread; blocks run one after another.
#include <barrier>
#include <thread>
#include <vector>
#include <cmath>
#include <cstring>
#include <atomic>
#include <algorithm>
#include <functional>
#include <cstdio>
using std::min; using std::max;
struct dim3 { unsigned x = 1, y = 1, z = 1; };
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict
struct float4 { float x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };
static std::barrier<>* g_block_barrier;
static std::barrier<>* g_warp_barrier[64];
static double g_slots[64][32];
static float g_dynamic_smem[65536];
inline void __syncthreads() { g_block_barrier->arrive_and_wait(); }
inline int linear_tid() { return threadIdx.x + threadIdx.y * blockDim.x; }
template <typename T> T shfl_impl(T v, int src) {
    int t = linear_tid(), w = t / 32, l = t % 32;
    g_warp_barrier[w]->arrive_and_wait();
    g_slots[w][l] = (double)v;
    g_warp_barrier[w]->arrive_and_wait();
    return (T)g_slots[w][src & 31];
}
template <typename T> T __shfl_sync(unsigned, T v, int src) { return shfl_impl(v, src); }
template <typename T> T __shfl_xor_sync(unsigned, T v, int o) { return shfl_impl(v, (linear_tid() % 32) ^ o); }
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
template <typename... A> void launch(void (*k)(A...), dim3 grid, dim3 block, A... args) {
    gridDim = grid; blockDim = block;
    int n = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; bz++) for (unsigned by = 0; by < grid.y; by++) for (unsigned bx = 0; bx < grid.x; bx++) {
        std::barrier<> bb(n); g_block_barrier = &bb;
        std::vector<std::barrier<>*> wb;
        for (int w = 0; w < (n + 31) / 32; w++) { g_warp_barrier[w] = new std::barrier<>(32); }
        std::vector<std::thread> ts;
        for (int t = 0; t < n; t++) ts.emplace_back([=] {
            threadIdx.x = t % block.x; threadIdx.y = (t / block.x) % block.y; threadIdx.z = t / (block.x * block.y);
            blockIdx.x = bx; blockIdx.y = by; blockIdx.z = bz;
            k(args...);
        });
        for (auto& t : ts) t.join();
        for (int w = 0; w < (n + 31) / 32; w++) delete g_warp_barrier[w];
    }
}

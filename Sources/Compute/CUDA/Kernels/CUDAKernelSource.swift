/// A family of CUDA C kernels (one `.swift` file each, holding its CUDA C source), compiled as one NVRTC
/// program with ``CUDAKernelPrelude`` in front. `functions` lists the `extern "C"` entry points it defines;
/// the compile test checks that each of them is in the compiled image.
public struct CUDAKernelSource: Sendable {
    public let family: String
    public let source: String
    public let functions: [String]

    /// The program NVRTC compiles: the prelude, then the family's kernels.
    public var program: String { CUDAKernelPrelude.source + "\n// ---- \(family) ----\n" + source }
}

/// Every kernel family of the CUDA backend.
public enum CUDAKernelLibrarySources {
    public static let all: [CUDAKernelSource] = [
        ConversionKernels.kernels,
        CopyKernels.kernels,
        ElementwiseKernels.kernels,
        EmbeddingKernels.kernels,
        NormKernels.kernels,
        RotaryKernels.kernels,
        KVCacheKernels.kernels,
        AttentionKernels.kernels,
        GroupedAttentionKernels.kernels,
        SkinnyLinearKernels.kernels,
        SoftmaxKernels.kernels,
        SamplingKernels.kernels,
        TrainingElementwiseKernels.kernels,
        TrainingNormKernels.kernels,
        TrainingLogProbKernels.kernels,
        TrainingAttentionKernels.kernels,
        TrainingAttentionTCKernels.kernels,
    ]

    /// Element types a kernel is instantiated for, as named in kernel names (`convert_f32_bf16`).
    static let floatTypes: [(cType: String, name: String)] = [("float", "f32"), ("bf16", "bf16"), ("f16", "f16")]
}

/// Shared by every family: the 16-bit float storage types with their conversions, and reductions.
///
/// No CUDA header is included, so NVRTC alone compiles the kernels (CI has no toolkit). bf16 converts
/// with bit operations (round to nearest even, NaN kept quiet, as `BFloat16` on the host); f16 with the
/// PTX `cvt` instructions.
enum CUDAKernelPrelude {
    static let source = #"""
typedef long long i64;
struct bf16 { unsigned short bits; };
struct f16 { unsigned short bits; };

#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __uint_as_float(((unsigned int)x.bits) << 16); }
__device__ __forceinline__ float to_float(f16 x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_float<bf16>(float x) {
    unsigned int u = __float_as_uint(x);
    bf16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it a quiet NaN
        r.bits = (unsigned short)((u >> 16) | 0x0040u);
        return r;
    }
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
    r.bits = (unsigned short)(u >> 16);
    return r;
}
template <> __device__ __forceinline__ f16 from_float<f16>(float x) {
    f16 r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(x));
    return r;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reductions for blockDim.x a multiple of 32. `scratch` holds 32 floats; every thread gets
// the result. The first barrier keeps a previous reduction's readers from seeing new values.
__device__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? scratch[lane] : 0.0f);
}
__device__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_max(lane < warps ? scratch[lane] : NEG_INF);
}

// Eight consecutive elements (16-byte aligned) as floats: two 16-byte loads of f32, one of a 16-bit type.
__device__ __forceinline__ void load8(const float* p, float* v) {
    float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}
template <typename H>
__device__ __forceinline__ void load8(const H* p, float* v) {
    uint4 u = *reinterpret_cast<const uint4*>(p);
    unsigned int words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        H lo, hi;
        lo.bits = (unsigned short)(words[i] & 0xffffu);
        hi.bits = (unsigned short)(words[i] >> 16);
        v[2 * i] = to_float(lo);
        v[2 * i + 1] = to_float(hi);
    }
}

// An f32 load that skips L1 (memory other blocks of the launch wrote), free to be scheduled with others.
__device__ __forceinline__ float load_cg(const float* p) {
    float v;
    asm("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

#define GRID_STRIDE(i, n) for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)
"""#
}

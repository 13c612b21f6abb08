import Foundation

/// `y = x · Wᵀ (+ b)` for a few rows (a decode step of a small batch), bound by reading the weights:
/// one warp per output column reads its weight row once with 16-byte loads and dots it with every row
/// of x (up to `rows` per block row of the grid), then reduces across the warp.
///
/// cuBLASLt runs these shapes as tiles of 64+ rows, mostly empty, at ~12 µs for a 768 × 768 layer
/// (measured on an H200); this reads the 1.2 MB of weights at memory speed.
///
/// Needs `K % 8 == 0` and 16-byte aligned weight and x rows (checked by the caller). W: f32, bf16 or f16;
/// x: f32 or W's type; y: f32. Grid: (ceil(O / warps), ceil(N / rows)); block: 32 × warps.
enum SkinnyLinearKernels {
    static let kernels = CUDAKernelSource(family: "skinny_linear", source: source, functions: functions)

    /// Rows of x one block handles (its accumulators live in registers).
    static let rows = 8
    static let warps = 8

    static let functions = CUDAKernelLibrarySources.floatTypes.flatMap { w in
        Set(["f32", w.name]).sorted().map { x in "skinny_linear_\(w.name)_x\(x)" }
    }

    static var source: String {
        var out = "#define SKINNY_ROWS \(rows)\n" + #"""
// Eight consecutive elements (16-byte aligned) as floats.
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

// f32 activations meet 16-bit weights rounded to the weights' type, as the cuBLASLt path converts them
// (and as a bf16 model in PyTorch computes); activations already in a 16-bit type are used as they are.
// (A version that rounded those too, and issued four weight loads ahead, ran batch-32 decode at half the
// speed on an H200: at 32 rows the kernel is bound by arithmetic.)
template <typename W> __device__ __forceinline__ float operand(float x, const float*) { return to_float(from_float<W>(x)); }
template <typename W, typename H> __device__ __forceinline__ float operand(float x, const H*) { return x; }

template <typename W, typename X>
__device__ void skinny_linear(const X* __restrict__ x, const W* __restrict__ w, const W* __restrict__ bias,
                              float* __restrict__ y, int n, int K, int O) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int o = blockIdx.x * (blockDim.x >> 5) + warp;
    if (o >= O) return;
    int r0 = blockIdx.y * SKINNY_ROWS;
    int rows = min(SKINNY_ROWS, n - r0);
    const W* wRow = w + (i64)o * K;
    const X* xRows = x + (i64)r0 * K;
    float acc[SKINNY_ROWS];
#pragma unroll
    for (int r = 0; r < SKINNY_ROWS; r++) acc[r] = 0.0f;
    for (int k = lane * 8; k < K; k += 32 * 8) {
        float wv[8];
        load8(wRow + k, wv);
#pragma unroll
        for (int r = 0; r < SKINNY_ROWS; r++) {
            if (r < rows) {
                float xv[8];
                load8(xRows + (i64)r * K + k, xv);
#pragma unroll
                for (int e = 0; e < 8; e++) acc[r] += wv[e] * operand<W>(xv[e], xRows);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < SKINNY_ROWS; r++) acc[r] = warp_sum(acc[r]);
    if (lane == 0) {
        float b = bias ? to_float(bias[o]) : 0.0f;
        for (int r = 0; r < rows; r++) y[(i64)(r0 + r) * O + o] = acc[r] + b;
    }
}

"""#
        for w in CUDAKernelLibrarySources.floatTypes {
            for xName in Set(["f32", w.name]).sorted() {
                let xType = xName == "f32" ? "float" : w.cType
                out += """
                extern "C" __global__ void skinny_linear_\(w.name)_x\(xName)(const \(xType)* x, const \(w.cType)* w, const \(w.cType)* bias, float* y, int n, int K, int O) {
                    skinny_linear(x, w, bias, y, n, K, O);
                }

                """
            }
        }
        return out
    }

    /// Off with `COLOCATE_SKINNY_LINEAR=0` (read once: the environment is not cheap to read per op).
    static let enabled = ProcessInfo.processInfo.environment["COLOCATE_SKINNY_LINEAR"] != "0"

    /// Whether `linear` of `n` rows by a weight of `[O, K]` (`weightBytes`) at these addresses runs here:
    /// a few rows, K a multiple of 8, 16-byte aligned rows; more rows only while the weight stays in L2
    /// (each block row of the grid reads it again).
    static func applies(n: Int, k: Int, weightBytes: Int, addresses: [UInt64]) -> Bool {
        guard enabled, n >= 1, k % 8 == 0, addresses.allSatisfy({ $0 % 16 == 0 }) else { return false }
        return n <= min(rows, maxRows) || (n <= min(4 * rows, maxRows) && weightBytes <= 16 << 20)
    }

    /// The most rows it takes (`COLOCATE_SKINNY_MAX_ROWS`, default 32): to compare with cuBLASLt.
    static let maxRows = ProcessInfo.processInfo.environment["COLOCATE_SKINNY_MAX_ROWS"].flatMap { Int($0) } ?? 4 * rows
}

import Foundation

/// `y = x · Wᵀ (+ b)` for a few rows (a decode step of a small batch), bound by reading the weights:
/// one warp per output column reads its weight row once with 16-byte loads and dots it with every row
/// of x (up to `rows` per block row of the grid), then reduces across the warp.
///
/// cuBLASLt runs these shapes as tiles of 64+ rows, mostly empty, at ~12 µs for a 768 × 768 layer
/// (measured on an H200); this reads the 1.2 MB of weights at memory speed.
///
/// At batch 1 a decode step is bound by launches more than by bytes, so three fused forms save them:
/// - `skinny_linears_*`: up to three layers of one input (q, k and v) in one grid over their output
///   columns laid end to end, each column writing its own layer's output;
/// - `skinny_linear_act_*`: a layer and its activation (OPT's fc1), written in f32 or the weights' type;
/// - `skinny_gated_*`: gate and up projections and `silu(gate) · up` (the SwiGLU MLP), one warp reading
///   both weight rows of a column.
/// Each output column sums in the same order as `skinny_linear_*`, and the epilogues use the formulas of
/// `ElementwiseKernels`, so a fused layer writes what the unfused ops write, bit for bit.
///
/// Needs `K % 8 == 0` and 16-byte aligned weight and x rows (checked by the caller). W: f32, bf16 or f16;
/// x: f32 or W's type; y: f32 (fused epilogues: f32 or W's type). Grid: (ceil(columns / warps),
/// ceil(N / rows)); block: 32 × warps.
enum SkinnyLinearKernels {
    static let kernels = CUDAKernelSource(family: "skinny_linear", source: source, functions: functions)

    /// Rows of x one block handles (its accumulators live in registers).
    static let rows = 8
    static let warps = 8
    /// Layers one `skinny_linears_*` launch takes.
    static let maxLayersPerLaunch = 3

    /// (weight, x) type pairs the kernels are instantiated for: x in f32 or in the weights' type.
    static let operandPairs: [(w: (cType: String, name: String), x: String)] = CUDAKernelLibrarySources.floatTypes.flatMap { w in
        Set(["f32", w.name]).sorted().map { (w: w, x: $0) }
    }

    static let functions = operandPairs.map { "skinny_linear_\($0.w.name)_x\($0.x)" }
        + operandPairs.map { "skinny_linears_\($0.w.name)_x\($0.x)" }
        + operandPairs.flatMap { pair in
            Set(["f32", pair.w.name]).sorted().flatMap { y in
                ["skinny_linear_act_\(pair.w.name)_x\(pair.x)_to_\(y)", "skinny_gated_\(pair.w.name)_x\(pair.x)_to_\(y)"]
            }
        }

    static var source: String {
        var out = "#define SKINNY_ROWS \(rows)\n" + ElementwiseKernels.activationFunctions + #"""

// f32 activations meet 16-bit weights rounded to the weights' type, as the cuBLASLt path converts them
// (and as a bf16 model in PyTorch computes); activations already in a 16-bit type are used as they are.
// (A version that rounded those too, and issued four weight loads ahead, ran batch-32 decode at half the
// speed on an H200: at 32 rows the kernel is bound by arithmetic.)
template <typename W> __device__ __forceinline__ float operand(float x, const float*) { return to_float(from_float<W>(x)); }
template <typename W, typename H> __device__ __forceinline__ float operand(float x, const H*) { return x; }

// acc[m][r] = Σ_k x[r, k] · wRows[m][k] for the `rows` rows of xRows, summed over the warp: every lane
// ends with the sums. The order of the sums of one output is the same for any M (M weight rows share
// each load of x).
template <int M, typename W, typename X>
__device__ __forceinline__ void skinny_dot(const X* __restrict__ xRows, const W* const (&wRows)[M], int rows, int K,
                                           float (&acc)[M][SKINNY_ROWS]) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int r = 0; r < SKINNY_ROWS; r++) acc[m][r] = 0.0f;
    for (int k = lane * 8; k < K; k += 32 * 8) {
        float wv[M][8];
#pragma unroll
        for (int m = 0; m < M; m++) load8(wRows[m] + k, wv[m]);
#pragma unroll
        for (int r = 0; r < SKINNY_ROWS; r++) {
            if (r < rows) {
                float xv[8];
                load8(xRows + (i64)r * K + k, xv);
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    float xe = operand<W>(xv[e], xRows);
#pragma unroll
                    for (int m = 0; m < M; m++) acc[m][r] += wv[m][e] * xe;
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int r = 0; r < SKINNY_ROWS; r++) acc[m][r] = warp_sum(acc[m][r]);
}

// Column o of x · Wᵀ + b for the block's rows of x: store(row, value) for each (on lane 0).
template <typename W, typename X, typename Store>
__device__ __forceinline__ void skinny_column(const X* __restrict__ x, const W* __restrict__ w, const W* __restrict__ bias,
                                              int n, int K, int o, Store store) {
    int lane = threadIdx.x & 31;
    int r0 = blockIdx.y * SKINNY_ROWS;
    int rows = min(SKINNY_ROWS, n - r0);
    const W* const wRows[1] = {w + (i64)o * K};
    float acc[1][SKINNY_ROWS];
    skinny_dot<1>(x + (i64)r0 * K, wRows, rows, K, acc);
    if (lane == 0) {
        float b = bias ? to_float(bias[o]) : 0.0f;
        for (int r = 0; r < rows; r++) store(r0 + r, acc[0][r] + b);
    }
}

// Column o of y = x · Wᵀ + b (y: [n, O] f32).
template <typename W, typename X>
__device__ __forceinline__ void skinny_column(const X* __restrict__ x, const W* __restrict__ w, const W* __restrict__ bias,
                                              float* __restrict__ y, int n, int K, int O, int o) {
    skinny_column(x, w, bias, n, K, o, [&](int r, float v) { y[(i64)r * O + o] = v; });
}

template <typename W, typename X>
__device__ void skinny_linear(const X* __restrict__ x, const W* __restrict__ w, const W* __restrict__ bias,
                              float* __restrict__ y, int n, int K, int O) {
    int o = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (o >= O) return;
    skinny_column(x, w, bias, y, n, K, O, o);
}

// Up to three layers of one x: column c of the grid is column c of layer 0, then of layer 1, then of
// layer 2 (a layer of O = 0 takes none).
template <typename W, typename X>
__device__ void skinny_linears(const X* __restrict__ x, int n, int K,
                               const W* w0, const W* b0, float* y0, int O0,
                               const W* w1, const W* b1, float* y1, int O1,
                               const W* w2, const W* b2, float* y2, int O2) {
    int o = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (o < O0) {
        skinny_column(x, w0, b0, y0, n, K, O0, o);
    } else if ((o -= O0) < O1) {
        skinny_column(x, w1, b1, y1, n, K, O1, o);
    } else if ((o -= O1) < O2) {
        skinny_column(x, w2, b2, y2, n, K, O2, o);
    }
}

// y = act(x · Wᵀ + b), in Y: what skinny_linear then activation_f32(_to_Y) write.
template <typename W, typename X, typename Y>
__device__ void skinny_linear_act(const X* __restrict__ x, const W* __restrict__ w, const W* __restrict__ bias,
                                  Y* __restrict__ y, int n, int K, int O, int kind) {
    int o = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (o >= O) return;
    skinny_column(x, w, bias, n, K, o, [&](int r, float v) { y[(i64)r * O + o] = from_float<Y>(activate(v, kind)); });
}

// y = silu(x · Gᵀ + bg) · (x · Uᵀ + bu), in Y: what two skinny_linear then swiglu_f32(_to_Y) write.
template <typename W, typename X, typename Y>
__device__ void skinny_gated(const X* __restrict__ x, const W* __restrict__ gate, const W* __restrict__ gateBias,
                             const W* __restrict__ up, const W* __restrict__ upBias, Y* __restrict__ y, int n, int K, int O) {
    int lane = threadIdx.x & 31;
    int o = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (o >= O) return;
    int r0 = blockIdx.y * SKINNY_ROWS;
    int rows = min(SKINNY_ROWS, n - r0);
    const W* const wRows[2] = {gate + (i64)o * K, up + (i64)o * K};
    float acc[2][SKINNY_ROWS];
    skinny_dot<2>(x + (i64)r0 * K, wRows, rows, K, acc);
    if (lane == 0) {
        float bg = gateBias ? to_float(gateBias[o]) : 0.0f;
        float bu = upBias ? to_float(upBias[o]) : 0.0f;
        for (int r = 0; r < rows; r++) {
            float g = acc[0][r] + bg, u = acc[1][r] + bu;
            y[(i64)(r0 + r) * O + o] = from_float<Y>(silu(g) * u);
        }
    }
}

"""#
        for (w, xName) in operandPairs {
            let xType = xName == "f32" ? "float" : w.cType
            let layer = { (i: Int) in "const \(w.cType)* w\(i), const \(w.cType)* b\(i), float* y\(i), int O\(i)" }
            out += """
            extern "C" __global__ void skinny_linear_\(w.name)_x\(xName)(const \(xType)* x, const \(w.cType)* w, const \(w.cType)* bias, float* y, int n, int K, int O) {
                skinny_linear(x, w, bias, y, n, K, O);
            }
            extern "C" __global__ void skinny_linears_\(w.name)_x\(xName)(const \(xType)* x, int n, int K, \(layer(0)), \(layer(1)), \(layer(2))) {
                skinny_linears(x, n, K, w0, b0, y0, O0, w1, b1, y1, O1, w2, b2, y2, O2);
            }

            """
            for yName in Set(["f32", w.name]).sorted() {
                let yType = yName == "f32" ? "float" : w.cType
                out += """
                extern "C" __global__ void skinny_linear_act_\(w.name)_x\(xName)_to_\(yName)(const \(xType)* x, const \(w.cType)* w, const \(w.cType)* bias, \(yType)* y, int n, int K, int O, int kind) {
                    skinny_linear_act(x, w, bias, y, n, K, O, kind);
                }
                extern "C" __global__ void skinny_gated_\(w.name)_x\(xName)_to_\(yName)(const \(xType)* x, const \(w.cType)* gate, const \(w.cType)* gateBias, const \(w.cType)* up, const \(w.cType)* upBias, \(yType)* y, int n, int K, int O) {
                    skinny_gated(x, gate, gateBias, up, upBias, y, n, K, O);
                }

                """
            }
        }
        return out
    }

    /// Off with `COLOCATE_SKINNY_LINEAR=0` (read once: the environment is not cheap to read per op).
    static let enabled = ProcessInfo.processInfo.environment["COLOCATE_SKINNY_LINEAR"] != "0"

    /// The fused forms off with `COLOCATE_FUSED_SKINNY=0` (the unfused ops then run, each skinny where it
    /// applies), to measure what fusing saves.
    static let fusedEnabled = ProcessInfo.processInfo.environment["COLOCATE_FUSED_SKINNY"] != "0"

    /// Whether `linear` of `n` rows by a weight of `[O, K]` (`weightBytes`) at these addresses runs here:
    /// a few rows, K a multiple of 8, 16-byte aligned rows; more rows only while the weight stays in L2
    /// (each block row of the grid reads it again).
    static func applies(n: Int, k: Int, weightBytes: Int, addresses: [UInt64]) -> Bool {
        guard enabled, n >= 1, k % 8 == 0, addresses.allSatisfy({ $0 % 16 == 0 }) else { return false }
        return n <= min(rows, maxRows) || (n <= min(4 * rows, maxRows) && weightBytes <= 16 << 20)
    }

    /// The most rows it takes (`COLOCATE_SKINNY_MAX_ROWS`, default 32): to compare with cuBLASLt.
    static let maxRows = ProcessInfo.processInfo.environment["COLOCATE_SKINNY_MAX_ROWS"].flatMap { Int($0) } ?? 4 * rows

    /// `<w>_x<x>` of the kernels for weights of `weight`'s type on x of `x`'s type, or nil when none is
    /// instantiated for them.
    static func operands(weight: DType, x: DType) -> String? {
        guard let w = suffix(weight), x == .f32 || x == weight else { return nil }
        return "\(w)_x\(suffix(x)!)"
    }

    private static func suffix(_ dtype: DType) -> String? {
        switch dtype {
        case .f32: "f32"
        case .bf16: "bf16"
        case .f16: "f16"
        default: nil
        }
    }

    /// The kernel running several layers of one x (`weights` their types, `weightBytes` their bytes
    /// together) in one launch, or nil where they run one `linear` each: one layer, layers of different
    /// types, or a shape the skinny kernel does not take. `addresses`: x's and every weight's.
    static func linearsKernel(n: Int, k: Int, x: DType, weights: [DType], weightBytes: Int, addresses: [UInt64]) -> String? {
        guard fusedEnabled, weights.count > 1, let first = weights.first, weights.allSatisfy({ $0 == first }),
              let operands = operands(weight: first, x: x),
              applies(n: n, k: k, weightBytes: weightBytes, addresses: addresses) else { return nil }
        return "skinny_linears_\(operands)"
    }

    /// The kernel of a layer and its activation written in `output` (f32 or the weights' type), or nil
    /// where they run as `linear` then `activation`.
    static func linearActivationKernel(n: Int, k: Int, x: DType, weight: DType, output: DType, weightBytes: Int,
                                       addresses: [UInt64]) -> String? {
        guard fusedEnabled, output == .f32 || output == weight, let operands = operands(weight: weight, x: x),
              applies(n: n, k: k, weightBytes: weightBytes, addresses: addresses) else { return nil }
        return "skinny_linear_act_\(operands)_to_\(suffix(output)!)"
    }

    /// The kernel of a gate and an up projection (of one type; `weightBytes` both) and their SwiGLU product
    /// written in `output`, or nil where they run as two `linear` then `swiGLU`.
    static func gatedKernel(n: Int, k: Int, x: DType, gate: DType, up: DType, output: DType, weightBytes: Int,
                            addresses: [UInt64]) -> String? {
        guard fusedEnabled, gate == up, output == .f32 || output == gate, let operands = operands(weight: gate, x: x),
              applies(n: n, k: k, weightBytes: weightBytes, addresses: addresses) else { return nil }
        return "skinny_gated_\(operands)_to_\(suffix(output)!)"
    }
}

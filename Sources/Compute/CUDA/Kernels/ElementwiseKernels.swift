/// Elementwise f32 kernels: activations, SwiGLU, add, and the bias broadcast that starts a GEMM with bias.
/// Activations and SwiGLU also write 16-bit results (`…_to_bf16`, `…_to_f16`): the operand of the next
/// GEMM with 16-bit weights, made without a separate conversion.
enum ElementwiseKernels {
    static let kernels = CUDAKernelSource(family: "elementwise", source: source, functions: functions)

    static let functions = ["activation_f32", "swiglu_f32", "add_f32"]
        + CUDAKernelLibrarySources.floatTypes.map { "fill_rows_\($0.name)" }
        + lowPrecision.flatMap { ["activation_f32_to_\($0.name)", "swiglu_f32_to_\($0.name)"] }

    static let lowPrecision = CUDAKernelLibrarySources.floatTypes.filter { $0.name != "f32" }

    /// The kernel of `base` ("activation_f32", "swiglu_f32") writing `output`.
    static func name(_ base: String, writing output: DType) -> String {
        output == .f32 ? base : "\(base)_to_\(CUDABackend.kernelSuffix(output))"
    }

    /// `kind` of `activation_f32`, in the order of these cases.
    static func code(of activation: Activation) -> Int32 {
        switch activation {
        case .relu: 0
        case .gelu: 1
        case .geluTanh: 2
        case .silu: 3
        }
    }

    /// The activation formulas, shared with the skinny linear kernels' fused epilogues (`SkinnyLinearKernels`)
    /// so that a fused layer computes what `activation` and `swiGLU` compute, bit for bit.
    static let activationFunctions = #"""
__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// kind: 0 relu, 1 gelu (erf), 2 gelu (tanh approximation), 3 silu.
__device__ __forceinline__ float activate(float v, int kind) {
    switch (kind) {
    case 0: return fmaxf(v, 0.0f);
    case 1: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case 2: return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    default: return silu(v);
    }
}

"""#

    static var source: String {
        var out = activationFunctions + #"""
template <typename Y>
__device__ void activation(const float* x, Y* y, i64 n, int kind) {
    GRID_STRIDE(i, n) y[i] = from_float<Y>(activate(x[i], kind));
}

template <typename Y>
__device__ void swiglu(const float* gate, const float* up, Y* y, i64 n) {
    GRID_STRIDE(i, n) y[i] = from_float<Y>(silu(gate[i]) * up[i]);
}

extern "C" __global__ void activation_f32(const float* x, float* y, i64 n, int kind) { activation(x, y, n, kind); }
extern "C" __global__ void swiglu_f32(const float* gate, const float* up, float* y, i64 n) { swiglu(gate, up, y, n); }

extern "C" __global__ void add_f32(const float* a, const float* b, float* y, i64 n) {
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

// y[r, c] = bias[c]: the C matrix of a GEMM with beta = 1. Grid: x over columns, y over rows.
template <typename T>
__device__ void fill_rows(const T* bias, float* y, i64 rows, i64 cols) {
    for (i64 r = blockIdx.y; r < rows; r += gridDim.y)
        for (i64 c = blockIdx.x * (i64)blockDim.x + threadIdx.x; c < cols; c += (i64)gridDim.x * blockDim.x)
            y[r * cols + c] = to_float(bias[c]);
}

"""#
        for t in CUDAKernelLibrarySources.floatTypes {
            out += """
            extern "C" __global__ void fill_rows_\(t.name)(const \(t.cType)* bias, float* y, i64 rows, i64 cols) { fill_rows(bias, y, rows, cols); }

            """
        }
        for t in lowPrecision {
            out += """
            extern "C" __global__ void activation_f32_to_\(t.name)(const float* x, \(t.cType)* y, i64 n, int kind) { activation(x, y, n, kind); }
            extern "C" __global__ void swiglu_f32_to_\(t.name)(const float* gate, const float* up, \(t.cType)* y, i64 n) { swiglu(gate, up, y, n); }

            """
        }
        return out
    }
}

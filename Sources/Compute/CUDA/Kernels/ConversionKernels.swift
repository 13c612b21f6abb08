/// Dtype conversion copies: contiguous (`convert_S_D`) and strided 2-D (`copy2d_S_D`, pitches in
/// elements), for every pair of f32 / bf16 / f16. Weight sync uses `copy2d` to take a (row- or
/// column-parallel) slice of a trainer's flat buffer into an engine's weight, converting on the way.
enum ConversionKernels {
    static let kernels = CUDAKernelSource(family: "conversion", source: source, functions: functions)

    static var functions: [String] {
        CUDAKernelLibrarySources.floatTypes.flatMap { s in
            CUDAKernelLibrarySources.floatTypes.flatMap { d in ["convert_\(s.name)_\(d.name)", "copy2d_\(s.name)_\(d.name)"] }
        } + ["convert_many_to_f32"]
    }

    static var source: String {
        var out = #"""
template <typename S, typename D>
__device__ void convert(const S* __restrict__ src, D* __restrict__ dst, i64 n) {
    GRID_STRIDE(i, n) dst[i] = from_float<D>(to_float(src[i]));
}

// Several small tensors to f32 in one launch: table[4 i + 0..3] = source address, destination address,
// element count, source type (0 f32, 1 bf16, 2 f16) of tensor i. Grid: (blocks, tensors).
extern "C" __global__ void convert_many_to_f32(const i64* table) {
    const i64* entry = table + 4 * blockIdx.y;
    const void* src = (const void*)entry[0];
    float* dst = (float*)entry[1];
    i64 n = entry[2];
    int type = (int)entry[3];
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        dst[i] = type == 1 ? to_float(((const bf16*)src)[i]) : type == 2 ? to_float(((const f16*)src)[i]) : ((const float*)src)[i];
}

// dst[r * dstPitch + c] = src[r * srcPitch + c] for r < rows, c < cols. Grid: x over columns, y over rows.
template <typename S, typename D>
__device__ void copy2d(const S* __restrict__ src, i64 srcPitch, D* __restrict__ dst, i64 dstPitch, i64 rows, i64 cols) {
    for (i64 r = blockIdx.y; r < rows; r += gridDim.y) {
        const S* s = src + r * srcPitch;
        D* d = dst + r * dstPitch;
        for (i64 c = blockIdx.x * (i64)blockDim.x + threadIdx.x; c < cols; c += (i64)gridDim.x * blockDim.x)
            d[c] = from_float<D>(to_float(s[c]));
    }
}

"""#
        for s in CUDAKernelLibrarySources.floatTypes {
            for d in CUDAKernelLibrarySources.floatTypes {
                out += """
                extern "C" __global__ void convert_\(s.name)_\(d.name)(const \(s.cType)* src, \(d.cType)* dst, i64 n) { convert(src, dst, n); }
                extern "C" __global__ void copy2d_\(s.name)_\(d.name)(const \(s.cType)* src, i64 srcPitch, \(d.cType)* dst, i64 dstPitch, i64 rows, i64 cols) {
                    copy2d(src, srcPitch, dst, dstPitch, rows, cols);
                }

                """
            }
        }
        return out
    }
}

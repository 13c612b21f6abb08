/// Writes a step's keys and values into the paged KV cache rows (slots) of its tokens; the cache may
/// be f32, bf16 or f16.
enum KVCacheKernels {
    static let kernels = CUDAKernelSource(family: "kvcache", source: source, functions: functions)

    static let functions = CUDAKernelLibrarySources.floatTypes.map { "write_kv_\($0.name)" }

    static var source: String {
        var out = #"""
// k, v: [tokens, rowElements] f32; caches: [slots, rowElements]; slots: [tokens]. Grid: x over the row, y over tokens.
template <typename C>
__device__ void write_kv(const float* k, const float* v, C* kCache, C* vCache, const int* slots, int tokens, int rowElements) {
    for (int t = blockIdx.y; t < tokens; t += gridDim.y) {
        i64 dst = (i64)slots[t] * rowElements, src = (i64)t * rowElements;
        for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < rowElements; e += gridDim.x * blockDim.x) {
            kCache[dst + e] = from_float<C>(k[src + e]);
            vCache[dst + e] = from_float<C>(v[src + e]);
        }
    }
}

"""#
        for t in CUDAKernelLibrarySources.floatTypes {
            out += """
            extern "C" __global__ void write_kv_\(t.name)(const float* k, const float* v, \(t.cType)* kCache, \(t.cType)* vCache, const int* slots, int tokens, int rowElements) {
                write_kv(k, v, kCache, vCache, slots, tokens, rowElements);
            }

            """
        }
        return out
    }
}

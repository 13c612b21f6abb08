/// Embedding lookup: `y[n, :] = table[ids[n], :]` (or `+=`), table in f32 / bf16 / f16.
enum EmbeddingKernels {
    static let kernels = CUDAKernelSource(family: "embedding", source: source, functions: functions)

    static let functions = CUDAKernelLibrarySources.floatTypes.map { "embedding_\($0.name)" }

    static var source: String {
        var out = #"""
// Grid: x over the hidden dimension, y over tokens.
template <typename T>
__device__ void embedding(const int* ids, const T* table, float* y, int tokens, int hidden, int accumulate) {
    for (int t = blockIdx.y; t < tokens; t += gridDim.y) {
        const T* row = table + (i64)ids[t] * hidden;
        float* out = y + (i64)t * hidden;
        for (int h = blockIdx.x * blockDim.x + threadIdx.x; h < hidden; h += gridDim.x * blockDim.x)
            out[h] = accumulate ? out[h] + to_float(row[h]) : to_float(row[h]);
    }
}

"""#
        for t in CUDAKernelLibrarySources.floatTypes {
            out += """
            extern "C" __global__ void embedding_\(t.name)(const int* ids, const \(t.cType)* table, float* y, int tokens, int hidden, int accumulate) {
                embedding(ids, table, y, tokens, hidden, accumulate);
            }

            """
        }
        return out
    }
}

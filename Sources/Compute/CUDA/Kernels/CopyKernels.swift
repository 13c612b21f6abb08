/// `copy_batch`: many strided copies (``StridedCopy``) in one launch, for weight sync.
///
/// The host cuts every copy into tasks of rows that are at most a tile wide (``CUDACopyBatch``); a
/// task is `rows` rows of `units` units, row `r` at `src + r·srcPitch` / `dst + r·dstPitch` (bytes).
/// A unit is a 16/8/4/2/1-byte word for a plain copy (the widest that every address and pitch of the
/// task allows) or one element for a dtype-converting copy. Task `t` owns tiles
/// `firstTile[t] ..< firstTile[t+1]`, each `rowsPerTile` rows; block `b` finds its task by binary
/// search and copies its tile. One launch instead of one `cuMemcpy2DAsync` per parameter is what
/// makes a tensor-parallel sync (a strided slice of every weight) run at copy bandwidth.
enum CopyKernels {
    static let kernels = CUDAKernelSource(family: "copy", source: source, functions: ["copy_batch"])
    /// Threads per block.
    static let threads = 512

    /// `kind` of a plain copy of `width`-byte words is `width`; a conversion is
    /// `conversionBase + 3·source + destination` with f32 = 0, bf16 = 1, f16 = 2.
    static let conversionBase = 100
    /// The nine 64-bit fields of a task, in order.
    static let taskFields = 9

    static let source = #"""
struct CopyTask {
    i64 src, dst;            // byte addresses of the task's first row
    i64 srcPitch, dstPitch;  // bytes from one row to the next
    i64 rows, units;         // rows, and units per row
    i64 firstTile, rowsPerTile;
    i64 kind;                // the word width of a plain copy, or 100 + 3·source + destination
};
#define COPY_UNROLL 4

// A unit of S stored as a unit of D: converted through float, or moved as it is when the types agree
// (plain copies move uint4 … unsigned char words).
template <typename S, typename D> struct Store {
    static __device__ __forceinline__ D of(S v) { return from_float<D>(to_float(v)); }
};
template <typename W> struct Store<W, W> {
    static __device__ __forceinline__ W of(W v) { return v; }
};

// Each thread moves up to COPY_UNROLL units per round, all loads before all stores, so that enough
// reads are in flight to cover memory latency.
template <typename S, typename D>
__device__ __forceinline__ void copy_tile(const char* src, i64 srcPitch, char* dst, i64 dstPitch, int rows, int units) {
    int n = rows * units;
    for (int base = threadIdx.x; base < n; base += COPY_UNROLL * blockDim.x) {
        S v[COPY_UNROLL];
        #pragma unroll
        for (int j = 0; j < COPY_UNROLL; j++) {
            int k = base + j * blockDim.x;
            if (k < n) {
                int r = rows == 1 ? 0 : k / units, c = k - r * units;
                v[j] = ((const S*)(src + r * srcPitch))[c];
            }
        }
        #pragma unroll
        for (int j = 0; j < COPY_UNROLL; j++) {
            int k = base + j * blockDim.x;
            if (k < n) {
                int r = rows == 1 ? 0 : k / units, c = k - r * units;
                ((D*)(dst + r * dstPitch))[c] = Store<S, D>::of(v[j]);
            }
        }
    }
}

extern "C" __global__ void copy_batch(const CopyTask* __restrict__ tasks, int taskCount) {
    i64 tile = blockIdx.x;
    int lo = 0, hi = taskCount - 1;
    while (lo < hi) {  // the last task whose first tile is at or before ours
        int mid = (lo + hi + 1) >> 1;
        if (tasks[mid].firstTile <= tile) lo = mid; else hi = mid - 1;
    }
    const CopyTask t = tasks[lo];
    i64 firstRow = (tile - t.firstTile) * t.rowsPerTile;
    int rows = (int)min(t.rowsPerTile, t.rows - firstRow);
    int units = (int)t.units;
    const char* src = (const char*)t.src + firstRow * t.srcPitch;
    char* dst = (char*)t.dst + firstRow * t.dstPitch;
    switch ((int)t.kind) {
    case 16: copy_tile<uint4, uint4>(src, t.srcPitch, dst, t.dstPitch, rows, units); break;
    case 8: copy_tile<unsigned long long, unsigned long long>(src, t.srcPitch, dst, t.dstPitch, rows, units); break;
    case 4: copy_tile<unsigned int, unsigned int>(src, t.srcPitch, dst, t.dstPitch, rows, units); break;
    case 2: copy_tile<unsigned short, unsigned short>(src, t.srcPitch, dst, t.dstPitch, rows, units); break;
    case 1: copy_tile<unsigned char, unsigned char>(src, t.srcPitch, dst, t.dstPitch, rows, units); break;
    case 101: copy_tile<float, bf16>(src, t.srcPitch, dst, t.dstPitch, rows, units); break;
    case 102: copy_tile<float, f16>(src, t.srcPitch, dst, t.dstPitch, rows, units); break;
    case 103: copy_tile<bf16, float>(src, t.srcPitch, dst, t.dstPitch, rows, units); break;
    case 105: copy_tile<bf16, f16>(src, t.srcPitch, dst, t.dstPitch, rows, units); break;
    case 106: copy_tile<f16, float>(src, t.srcPitch, dst, t.dstPitch, rows, units); break;
    case 107: copy_tile<f16, bf16>(src, t.srcPitch, dst, t.dstPitch, rows, units); break;
    }
}
"""#
}

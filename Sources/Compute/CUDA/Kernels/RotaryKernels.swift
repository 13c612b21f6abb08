/// Rotary position embedding in place, Hugging Face "rotate half": pairs (i, i + d/2) rotate by
/// `f32(pos) · invFreq[i]` (the per-pair inverse frequencies the model computed from its RoPE
/// variant, in f32 as HF does), and cos/sin are scaled by `scaling` (YaRN's attention factor).
enum RotaryKernels {
    static let kernels = CUDAKernelSource(family: "rotary", source: source, functions: ["rotary_f32"])

    static let source = #"""
// x: [tokens, heads, headDim], and y: [tokens, yHeads, headDim] rotated at the same positions in the same
// launch (a layer's queries and keys; y null and yHeads 0 for one tensor); positions: [tokens]; invFreq:
// [headDim / 2]. One thread per rotated pair.
extern "C" __global__ void rotary_f32(float* x, float* y, const int* positions, const float* invFreq, int tokens, int heads,
                                      int yHeads, int headDim, float scaling) {
    int half = headDim / 2, rowHeads = heads + yHeads;
    i64 pairs = (i64)tokens * rowHeads * half;
    GRID_STRIDE(idx, pairs) {
        int i = (int)(idx % half);
        i64 head = idx / half;  // token * rowHeads + h
        int t = (int)(head / rowHeads), h = (int)(head % rowHeads);
        float angle = (float)positions[t] * invFreq[i];
        float s, c;
        sincosf(angle, &s, &c);
        c *= scaling;
        s *= scaling;
        float* row = h < heads ? x + ((i64)t * heads + h) * headDim : y + ((i64)t * yHeads + h - heads) * headDim;
        float x0 = row[i], x1 = row[i + half];
        row[i] = x0 * c - x1 * s;
        row[i + half] = x1 * c + x0 * s;
    }
}
"""#
}

/// Rotary position embedding in place, Hugging Face "rotate half": pairs (i, i + d/2) rotate by
/// `f32(pos) · invFreq[i]` (the per-pair inverse frequencies the model computed from its RoPE
/// variant, in f32 as HF does), and cos/sin are scaled by `scaling` (YaRN's attention factor).
enum RotaryKernels {
    static let kernels = CUDAKernelSource(family: "rotary", source: source, functions: ["rotary_f32"])

    static let source = #"""
// x: [tokens, heads, headDim]; positions: [tokens]; invFreq: [headDim / 2]. One thread per rotated pair.
extern "C" __global__ void rotary_f32(float* x, const int* positions, const float* invFreq, int tokens, int heads,
                                      int headDim, float scaling) {
    int half = headDim / 2;
    i64 pairs = (i64)tokens * heads * half;
    GRID_STRIDE(idx, pairs) {
        int i = (int)(idx % half);
        i64 head = idx / half;  // token * heads + h
        int t = (int)(head / heads);
        float angle = (float)positions[t] * invFreq[i];
        float s, c;
        sincosf(angle, &s, &c);
        c *= scaling;
        s *= scaling;
        float* row = x + head * headDim;
        float x0 = row[i], x1 = row[i + half];
        row[i] = x0 * c - x1 * s;
        row[i + half] = x1 * c + x0 * s;
    }
}
"""#
}

/// Rotary position embedding in place, Hugging Face "rotate half": pairs (i, i + d/2) rotate by
/// `pos · theta^(-2i/d)`, computed in f32 as HF does (`inv_freq = 1 / theta^(2i/d)`).
enum RotaryKernels {
    static let kernels = CUDAKernelSource(family: "rotary", source: source, functions: ["rotary_f32"])

    static let source = #"""
// x: [tokens, heads, headDim]; positions: [tokens]. One thread per rotated pair.
extern "C" __global__ void rotary_f32(float* x, const int* positions, int tokens, int heads, int headDim, float theta) {
    int half = headDim / 2;
    i64 pairs = (i64)tokens * heads * half;
    GRID_STRIDE(idx, pairs) {
        int i = (int)(idx % half);
        i64 head = idx / half;  // token * heads + h
        int t = (int)(head / heads);
        float invFreq = 1.0f / powf(theta, (float)(2 * i) / (float)headDim);
        float angle = (float)positions[t] * invFreq;
        float s, c;
        sincosf(angle, &s, &c);
        float* row = x + head * headDim;
        float x0 = row[i], x1 = row[i + half];
        row[i] = x0 * c - x1 * s;
        row[i + half] = x1 * c + x0 * s;
    }
}
"""#
}

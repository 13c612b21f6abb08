#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a rotary position embedding rotates by: pair i of every head (i < headDim/2, HF "rotate
/// half" pairs (i, i + d/2)) turns by `f32(position) · inverseFrequencies[i]`, and the cos/sin are
/// multiplied by `attentionScaling` (YaRN's mscale; 1 for every other variant).
///
/// The scaled variants (linear, dynamic NTK, Llama 3, YaRN) differ only in these numbers, which
/// the model layer computes from `config.json` as transformers does.
public struct RotaryEmbedding: Sendable, Equatable {
    /// One per rotated pair: `headDim / 2` values.
    public var inverseFrequencies: [Float]
    public var attentionScaling: Float

    public init(inverseFrequencies: [Float], attentionScaling: Float = 1) {
        self.inverseFrequencies = inverseFrequencies
        self.attentionScaling = attentionScaling
    }

    /// Plain RoPE: `invFreq[i] = 1 / theta^(f32(2i) / f32(d))`, as transformers computes it in f32
    /// (the power taken in double precision and rounded, which is within an ulp of torch's f32 pow).
    public init(theta: Float, headDim: Int) {
        self.init(inverseFrequencies: Self.defaultInverseFrequencies(theta: theta, headDim: headDim))
    }

    public static func defaultInverseFrequencies(theta: Float, headDim: Int) -> [Float] {
        (0..<max(0, headDim / 2)).map { i in
            1 / Float(pow(Double(theta), Double(Float(2 * i) / Float(headDim))))
        }
    }
}

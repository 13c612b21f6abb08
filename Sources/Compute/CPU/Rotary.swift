#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rotary position embedding, Hugging Face "rotate half" convention (Llama, Qwen2, NeoX).
extension CPUKernels {
    /// Rotates, in place, each head of each token: for i < d/2 the pair (x[i], x[i + d/2]) turns by
    /// `positions[n] · inverseFrequencies[i]`, and cos/sin are scaled by `attentionScaling`.
    /// x: [N, heads, headDim], headDim even.
    ///
    /// The angle follows transformers' `RotaryEmbedding` in f32 — `angle = f32(pos) · invFreq[i]`,
    /// `cos = f32(cos(angle)) · f32(scaling)` — with cos/sin taken in double precision, so results
    /// match HF's f32 computation to rounding.
    public static func rotary(
        _ x: UnsafeMutablePointer<Float>, positions: UnsafeBufferPointer<Int32>, heads: Int, headDim: Int,
        inverseFrequencies inverseFrequency: UnsafeBufferPointer<Float>, attentionScaling: Float = 1
    ) {
        let half = headDim / 2
        guard half > 0, heads > 0 else { return }
        precondition(inverseFrequency.count == half, "rotary: \(inverseFrequency.count) inverse frequencies for head dimension \(headDim)")
        let tokensPerChunk = max(1, elementwiseGrain / (heads * headDim))
        Parallel.forEachChunk(total: positions.count, grain: tokensPerChunk) { tokens in
            let cosines = UnsafeMutablePointer<Float>.allocate(capacity: half)
            let sines = UnsafeMutablePointer<Float>.allocate(capacity: half)
            defer {
                cosines.deallocate()
                sines.deallocate()
            }
            for n in tokens {
                let position = Float(positions[n])
                for i in 0..<half {
                    let angle = Double(position * inverseFrequency[i])
                    cosines[i] = Float(cos(angle)) * attentionScaling
                    sines[i] = Float(sin(angle)) * attentionScaling
                }
                for h in 0..<heads {
                    rotatePair(x + (n * heads + h) * headDim, half: half, cosines: cosines, sines: sines)
                }
            }
        }
    }

    @inline(always)
    static func rotatePair(_ row: UnsafeMutablePointer<Float>, half: Int, cosines: UnsafePointer<Float>, sines: UnsafePointer<Float>) {
        let second = row + half
        var i = 0
        while i &+ 8 <= half {
            let a = loadVector(row, i), b = loadVector(second, i), c = loadVector(cosines, i), s = loadVector(sines, i)
            storeVector(a * c - b * s, row, i)
            storeVector(b * c + a * s, second, i)
            i &+= 8
        }
        while i < half {
            let a = row[i], b = second[i], c = cosines[i], s = sines[i]
            row[i] = a * c - b * s
            second[i] = b * c + a * s
            i &+= 1
        }
    }
}

@inline(always) private func loadVector(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(always) private func storeVector(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
    UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: SIMD8<Float>.self)
}

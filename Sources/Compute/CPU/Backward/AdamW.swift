#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `torch.optim.AdamW` (bias-corrected, decoupled weight decay) over flat f32 buffers, following
/// PyTorch's single-tensor implementation operation by operation:
///
///     p *= 1 − lr·wd                                   (decay ranges only)
///     m  = m + (1 − β1)·(g − m)                        (lerp)
///     v  = v·β2 + (1 − β2)·g·g
///     denom = sqrt(v) / sqrt(1 − β2^t) + eps
///     p += −(lr / (1 − β1^t)) · m / denom
///
/// Scalars are formed in f64 as Python does and used in f32, as PyTorch's CPU kernels do.
extension CPUKernels {
    public static func adamW(
        params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, count: Int, step: Int, hyper: AdamWHyperparameters,
        decayRanges: [Range<Int>], lowPrecisionCopy: UnsafeMutablePointer<UInt16>?
    ) {
        precondition(step >= 1, "adamW: step counts from 1, got \(step)")
        let lr = Double(hyper.learningRate), beta1 = Double(hyper.beta1), beta2 = Double(hyper.beta2)
        let coefficients = AdamWCoefficients(
            decay: Float(1 - lr * Double(hyper.weightDecay)),
            oneMinusBeta1: Float(1 - beta1), beta2: hyper.beta2, oneMinusBeta2: Float(1 - beta2),
            correction2Root: Float((1 - pow(beta2, Double(step))).squareRoot()),
            epsilon: hyper.epsilon, negativeStepSize: Float(-(lr / (1 - pow(beta1, Double(step))))))
        let ranges = decayRanges.map { $0.clamped(to: 0..<count) }.filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        let buffers = AdamWBuffers(params: params, grads: grads, m: m, v: v, copy: lowPrecisionCopy)
        Parallel.forEachChunk(total: count, grain: elementwiseGrain) { chunk in
            var cursor = chunk.lowerBound
            for r in ranges where r.upperBound > chunk.lowerBound && r.lowerBound < chunk.upperBound {
                let decayed = r.clamped(to: chunk)
                if decayed.lowerBound > cursor { AdamWMath.update(buffers, cursor..<decayed.lowerBound, coefficients, decay: false) }
                AdamWMath.update(buffers, max(cursor, decayed.lowerBound)..<decayed.upperBound, coefficients, decay: true)
                cursor = max(cursor, decayed.upperBound)
            }
            if cursor < chunk.upperBound { AdamWMath.update(buffers, cursor..<chunk.upperBound, coefficients, decay: false) }
        }
    }
}

struct AdamWCoefficients {
    var decay: Float
    var oneMinusBeta1: Float
    var beta2: Float
    var oneMinusBeta2: Float
    var correction2Root: Float
    var epsilon: Float
    var negativeStepSize: Float
}

struct AdamWBuffers: @unchecked Sendable {
    var params: UnsafeMutablePointer<Float>
    var grads: UnsafePointer<Float>
    var m: UnsafeMutablePointer<Float>
    var v: UnsafeMutablePointer<Float>
    var copy: UnsafeMutablePointer<UInt16>?
}

enum AdamWMath {
    typealias V = SIMD8<Float>

    static func update(_ b: AdamWBuffers, _ range: Range<Int>, _ c: AdamWCoefficients, decay: Bool) {
        if range.isEmpty { return }
        let decayFactor = V(repeating: decay ? c.decay : 1)
        let w1 = V(repeating: c.oneMinusBeta1), beta2 = V(repeating: c.beta2), w2 = V(repeating: c.oneMinusBeta2)
        let root = V(repeating: c.correction2Root), eps = V(repeating: c.epsilon), step = V(repeating: c.negativeStepSize)
        var i = range.lowerBound
        while i + 8 <= range.upperBound {
            let g = load(b.grads, i)
            var p = load(b.params, i)
            if decay { p = p * decayFactor }
            var m = load(b.m, i)
            m = m + w1 * (g - m)
            let v = load(b.v, i) * beta2 + w2 * g * g
            let denom = v.squareRoot() / root + eps
            p = p + step * (m / denom)
            store(p, b.params, i)
            store(m, b.m, i)
            store(v, b.v, i)
            if let copy = b.copy { storeBF16(p, copy, i) }
            i += 8
        }
        while i < range.upperBound {
            let g = b.grads[i]
            var p = b.params[i]
            if decay { p = p * c.decay }
            let m = b.m[i] + c.oneMinusBeta1 * (g - b.m[i])
            let v = b.v[i] * c.beta2 + c.oneMinusBeta2 * g * g
            let denom = v.squareRoot() / c.correction2Root + c.epsilon
            p = p + c.negativeStepSize * (m / denom)
            b.params[i] = p
            b.m[i] = m
            b.v[i] = v
            b.copy?[i] = BFloat16(p).bitPattern
            i += 1
        }
    }

    /// Round-to-nearest-even f32 → bf16 of eight lanes (NaN stays a quiet NaN).
    @inline(always) static func storeBF16(_ x: V, _ out: UnsafeMutablePointer<UInt16>, _ i: Int) {
        let bits = unsafeBitCast(x, to: SIMD8<UInt32>.self)
        var rounded = (bits &+ 0x7FFF &+ ((bits &>> 16) & 1)) &>> 16
        rounded.replace(with: (bits &>> 16) | 0x0040, where: x .!= x)
        // Lane by lane: the generic SIMD narrowing initialiser is not reliably specialised.
        for j in 0..<8 { out[i + j] = UInt16(truncatingIfNeeded: rounded[j]) }
    }

    @inline(always) static func load(_ p: UnsafePointer<Float>, _ i: Int) -> V {
        UnsafeRawPointer(p + i).loadUnaligned(as: V.self)
    }

    @inline(always) static func load(_ p: UnsafeMutablePointer<Float>, _ i: Int) -> V {
        UnsafeRawPointer(p + i).loadUnaligned(as: V.self)
    }

    @inline(always) static func store(_ v: V, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
        UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: V.self)
    }
}

import Compute
import Foundation

/// Naive CPU versions of the op set, written for clarity, that `colocate cuda-check` compares the GPU
/// against. Row-major `[Float]` arrays; f32 arithmetic with f64 sums where rounding order would differ.
enum CUDACheckReference {
    /// y[n, o] = Σ_k x[n, k] · w[o, k] + b[o]
    static func linear(_ x: [Float], _ w: [Float], _ b: [Float]?, n: Int, k: Int, o: Int) -> [Float] {
        var y = [Float](repeating: 0, count: n * o)
        for i in 0..<n {
            for j in 0..<o {
                var s = 0.0
                for t in 0..<k { s += Double(x[i * k + t]) * Double(w[j * k + t]) }
                y[i * o + j] = Float(s) + (b?[j] ?? 0)
            }
        }
        return y
    }

    static func layerNorm(_ x: [Float], _ w: [Float], _ b: [Float], hidden: Int, eps: Float) -> [Float] {
        var y = x
        for r in 0..<(x.count / hidden) {
            let row = x[(r * hidden)..<((r + 1) * hidden)].map(Double.init)
            let mean = row.reduce(0, +) / Double(hidden)
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(hidden)
            let rstd = 1 / (variance + Double(eps)).squareRoot()
            for i in 0..<hidden { y[r * hidden + i] = Float((row[i] - mean) * rstd) * w[i] + b[i] }
        }
        return y
    }

    static func rmsNorm(_ x: [Float], _ w: [Float], hidden: Int, eps: Float) -> [Float] {
        var y = x
        for r in 0..<(x.count / hidden) {
            let row = x[(r * hidden)..<((r + 1) * hidden)].map(Double.init)
            let rstd = 1 / (row.map { $0 * $0 }.reduce(0, +) / Double(hidden) + Double(eps)).squareRoot()
            for i in 0..<hidden { y[r * hidden + i] = Float(row[i] * rstd) * w[i] }
        }
        return y
    }

    /// HF rotate-half with f32 angles as transformers computes them.
    static func rotary(_ x: [Float], positions: [Int32], heads: Int, headDim: Int, theta: Float) -> [Float] {
        var y = x
        let half = headDim / 2
        for (t, position) in positions.enumerated() {
            for h in 0..<heads {
                let base = (t * heads + h) * headDim
                for i in 0..<half {
                    let invFreq = 1 / powf(theta, Float(2 * i) / Float(headDim))
                    let angle = Float(position) * invFreq
                    let (c, s) = (cos(Double(angle)), sin(Double(angle)))
                    let (x0, x1) = (Double(x[base + i]), Double(x[base + i + half]))
                    y[base + i] = Float(x0 * c - x1 * s)
                    y[base + i + half] = Float(x1 * c + x0 * s)
                }
            }
        }
        return y
    }

    static func activation(_ kind: Activation, _ v: Float) -> Float {
        let x = Double(v)
        switch kind {
        case .relu: return max(v, 0)
        case .gelu: return Float(0.5 * x * (1 + erf(x / 2.0.squareRoot())))
        case .geluTanh: return Float(0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x))))
        case .silu: return Float(x / (1 + exp(-x)))
        }
    }

    /// Causal attention of each token against its sequence's positions 0...pos (cache read through `slot`).
    static func attention(q: [Float], kCache: [Float], vCache: [Float], layout: AttentionLayout,
                          heads: Int, kvHeads: Int, headDim: Int, scale: Float) -> [Float] {
        var out = [Float](repeating: 0, count: q.count)
        let group = heads / kvHeads
        for t in 0..<layout.positionOfToken.count {
            let sequence = Int(layout.sequenceOfToken[t])
            let position = Int(layout.positionOfToken[t])
            for h in 0..<heads {
                let kvh = h / group
                let qBase = (t * heads + h) * headDim
                var scores = [Double](repeating: 0, count: position + 1)
                for p in 0...position {
                    let kBase = (layout.slot(sequence: sequence, position: p) * kvHeads + kvh) * headDim
                    var s = 0.0
                    for d in 0..<headDim { s += Double(q[qBase + d]) * Double(kCache[kBase + d]) }
                    scores[p] = s * Double(scale)
                }
                let m = scores.max()!
                let e = scores.map { exp($0 - m) }
                let sum = e.reduce(0, +)
                for d in 0..<headDim {
                    var o = 0.0
                    for p in 0...position {
                        let vBase = (layout.slot(sequence: sequence, position: p) * kvHeads + kvh) * headDim
                        o += e[p] * Double(vCache[vBase + d])
                    }
                    out[qBase + d] = Float(o / sum)
                }
            }
        }
        return out
    }

    static func softmax(_ x: [Float], cols: Int, logarithm: Bool) -> [Float] {
        var y = x
        for r in 0..<(x.count / cols) {
            let row = x[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let m = row.max()!
            let sum = row.map { exp($0 - m) }.reduce(0, +)
            for i in 0..<cols {
                y[r * cols + i] = Float(logarithm ? row[i] - m - log(sum) : exp(row[i] - m) / sum)
            }
        }
        return y
    }

    static func argmax(_ x: [Float], cols: Int) -> [Int32] {
        (0..<(x.count / cols)).map { r in
            var best = 0
            for i in 1..<cols where x[r * cols + i] > x[r * cols + best] { best = i }
            return Int32(best)
        }
    }

    /// Inverse-CDF sample of row `r` with `u`; also the CDF interval of the chosen index, to tell a
    /// rounding tie at a boundary from a wrong choice.
    static func sample(_ p: [Float], cols: Int, row r: Int, u: Float) -> Int32 {
        let row = p[(r * cols)..<((r + 1) * cols)].map(Double.init)
        let target = Double(u) * row.reduce(0, +)
        var acc = 0.0
        for i in 0..<cols {
            acc += row[i]
            if row[i] > 0 && acc > target { return Int32(i) }
        }
        return Int32(row.lastIndex { $0 > 0 } ?? 0)
    }

    /// Values rounded through `dtype` (what the GPU sees of weights or activations stored in it).
    static func rounded(_ values: [Float], to dtype: DType) -> [Float] {
        switch dtype {
        case .bf16: values.map { BFloat16($0).float }
        case .f16: values.map { Float(Float16($0)) }
        default: values
        }
    }
}

/// SplitMix64: reproducible random test data.
struct CheckRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    mutating func float(_ lo: Float = -1, _ hi: Float = 1) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }
    mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] { (0..<n).map { _ in float(lo, hi) } }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

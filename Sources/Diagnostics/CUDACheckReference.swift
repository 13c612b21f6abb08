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

    /// What `sample_logits_f32` computes for one row, from its definition: p = exp((l − max) / T) in f32
    /// as the kernel; the top-k threshold is the k-th largest p and the top-p one the largest p whose
    /// at-or-above mass reaches topP of the top-k mass (found here by sorting, where the kernel searches
    /// bit patterns; ties with a threshold are kept); then an f64 inverse CDF over the kept tokens in
    /// index order.
    struct LogitSample {
        let logits: [Float]
        /// exp((l − max) / T), unnormalised.
        let probabilities: [Float]
        /// max + log Σ exp(l − max): raw log-probabilities are `l − logNormaliser`.
        let logNormaliser: Double
        /// Bit patterns of the smallest kept probability: first the exact one, then any other a top-p
        /// target within `tolerance` (relative to the top-k mass) would give, as the GPU's f32 sums may.
        let thresholds: [UInt32]

        init(logits row: ArraySlice<Float>, temperature: Float, topK: Int, topP: Float, tolerance: Double) {
            logits = Array(row)
            let m = logits.max()!
            logNormaliser = Double(m) + log(logits.reduce(0.0) { $0 + exp(Double($1 - m)) })
            let invTemperature = 1 / temperature  // as the kernel receives it
            probabilities = logits.map { expf(($0 - m) * invTemperature) }
            var topKThreshold: UInt32 = 0
            var sorted: [Float] = []
            if (topK > 0 && topK < logits.count) || topP < 1 {
                sorted = probabilities.sorted(by: >)
            }
            if topK > 0 && topK < logits.count { topKThreshold = sorted[topK - 1].bitPattern }
            var candidates = [topKThreshold]
            if topP < 1 {
                // Walk the distinct values from the largest: the exact threshold is the first whose
                // at-or-above mass reaches the target; nearby ones qualify within the tolerance.
                let kept = sorted.filter { $0.bitPattern >= topKThreshold }
                let mass = kept.reduce(0.0) { $0 + Double($1) }
                let target = Double(topP) * mass, slack = tolerance * mass
                var exact: UInt32?
                var near: [UInt32] = []
                var above = 0.0, i = 0
                while i < kept.count {
                    let value = kept[i]
                    var atOrAbove = above
                    while i < kept.count && kept[i] == value {
                        atOrAbove += Double(kept[i])
                        i += 1
                    }
                    if exact == nil && atOrAbove >= target { exact = value.bitPattern }
                    if atOrAbove >= target - slack && above < target + slack { near.append(value.bitPattern) }
                    above = atOrAbove
                }
                candidates = [exact ?? topKThreshold] + near.filter { $0 != exact }
            }
            // The row's maximum (p = 1) is always kept.
            thresholds = candidates.map { max($0, topKThreshold) }.map { min($0, Float(1).bitPattern) }
        }

        func isKept(_ i: Int, threshold: UInt32) -> Bool {
            probabilities[i] > 0 && probabilities[i].bitPattern >= threshold
        }

        private func keptMass(threshold: UInt32, below end: Int) -> Double {
            (0..<end).reduce(0.0) { isKept($1, threshold: threshold) ? $0 + Double(probabilities[$1]) : $0 }
        }

        /// The token a uniform `u` picks: inverse CDF over the kept tokens in index order.
        func token(u: Float, threshold: UInt32) -> Int {
            let target = Double(u) * keptMass(threshold: threshold, below: logits.count)
            var cumulative = 0.0, last = 0
            for i in logits.indices where isKept(i, threshold: threshold) {
                cumulative += Double(probabilities[i])
                last = i
                if cumulative > target { return i }
            }
            return last
        }

        /// The uniforms in [0, 1) that pick `token`; nil when it is not kept.
        func interval(of token: Int, threshold: UInt32) -> ClosedRange<Double>? {
            guard isKept(token, threshold: threshold) else { return nil }
            let total = keptMass(threshold: threshold, below: logits.count)
            let before = keptMass(threshold: threshold, below: token)
            return (before / total)...((before + Double(probabilities[token])) / total)
        }

        /// Probability of each token after truncation at `threshold`, normalised.
        func truncated(threshold: UInt32) -> [Double] {
            let total = keptMass(threshold: threshold, below: logits.count)
            return logits.indices.map { isKept($0, threshold: threshold) ? Double(probabilities[$0]) / total : 0 }
        }

        /// Raw log-probability: log-softmax of the unmodified logits.
        func logprob(_ token: Int) -> Float { Float(Double(logits[token]) - logNormaliser) }
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

/// Reproducible random check data, from the project's SplitMix64.
extension SplitMix64 {
    /// Uniform in [lo, hi).
    mutating func float(_ lo: Float = -1, _ hi: Float = 1) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }
    mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] { (0..<n).map { _ in float(lo, hi) } }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Log-probabilities of chosen tokens from rows of logits, their entropy, and the backward, row by
/// row (rows over threads). Every row is max-subtracted, as PyTorch's `log_softmax`.
extension CPUKernels {
    /// `logProb[r] = (x[r, t] − max) − log Σ exp(x[r, :] − max)` with `t = targets[r]`, and when
    /// `entropy` is given `entropy[r] = log s − Σ e·(x − max) / s` (e = exp(x − max), s = Σ e).
    public static func tokenLogProbs(
        _ logits: UnsafePointer<Float>, rows: Int, vocabulary: Int, targets: UnsafeBufferPointer<Int32>,
        into logProb: UnsafeMutablePointer<Float>, entropy: UnsafeMutablePointer<Float>?
    ) {
        precondition(targets.count == rows, "tokenLogProbs: \(targets.count) targets for \(rows) rows")
        for t in targets { precondition(t >= 0 && Int(t) < vocabulary, "tokenLogProbs: target \(t) outside the vocabulary of \(vocabulary)") }
        forEachRow(rows: rows, width: vocabulary) { r in
            let x = logits + r * vocabulary
            let m = VectorMath.maximum(x, vocabulary)
            if let entropy {
                let (s, sx) = LogProbMath.exponentialMoments(x, vocabulary, minus: m)
                let logSum = log(s)
                logProb[r] = (x[Int(targets[r])] - m) - logSum
                entropy[r] = logSum - sx / s
            } else {
                let s = VectorMath.exponentialSum(x, vocabulary, minus: m, into: nil)
                logProb[r] = (x[Int(targets[r])] - m) - log(s)
            }
        }
    }

    /// Overwrites each row with `dLogProb[r] · (onehot(targets[r]) − softmax(row))`; rows whose
    /// gradient is 0 become zeros without touching exp.
    public static func tokenLogProbsBackward(
        _ logits: UnsafeMutablePointer<Float>, rows: Int, vocabulary: Int, targets: UnsafeBufferPointer<Int32>,
        logProbGradient dLogProb: UnsafePointer<Float>
    ) {
        precondition(targets.count == rows, "tokenLogProbsBackward: \(targets.count) targets for \(rows) rows")
        for t in targets { precondition(t >= 0 && Int(t) < vocabulary, "tokenLogProbsBackward: target \(t) outside the vocabulary of \(vocabulary)") }
        forEachRow(rows: rows, width: vocabulary) { r in
            let x = logits + r * vocabulary, g = dLogProb[r]
            if g == 0 {
                x.initialize(repeating: 0, count: vocabulary)
                return
            }
            let m = VectorMath.maximum(x, vocabulary)
            let s = VectorMath.exponentialSum(x, vocabulary, minus: m, into: x)
            VectorMath.scale(x, vocabulary, by: -g / s)
            x[Int(targets[r])] += g
        }
    }
}

enum LogProbMath {
    typealias V = SIMD8<Float>

    /// `(Σ e, Σ e·(x − m))` with `e = exp(x − m)`, in one pass.
    static func exponentialMoments(_ x: UnsafePointer<Float>, _ n: Int, minus m: Float) -> (Float, Float) {
        let shift = V(repeating: -m)
        var s = V(), sx = V()
        var i = 0
        while i + 8 <= n {
            let d = UnsafeRawPointer(x + i).loadUnaligned(as: V.self) + shift
            let e = VectorMath.exp(d)
            s += e
            sx.addProduct(e, d)
            i += 8
        }
        if i < n {
            // Padding lanes: exp(−∞) = 0, and 0 · d must not be NaN, so d is 0 there.
            var d = V(repeating: 0), mask = V(repeating: 0)
            for j in 0..<(n - i) {
                d[j] = x[i + j] - m
                mask[j] = 1
            }
            let e = VectorMath.exp(d) * mask
            s += e
            sx.addProduct(e, d)
        }
        return (s.sum(), sx.sum())
    }
}

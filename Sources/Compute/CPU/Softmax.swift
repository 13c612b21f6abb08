#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Row-wise softmax and log-softmax, max-subtracted so that no exponent overflows. Rows are split
/// over threads when the tensor is large (a batch of vocabulary-sized logit rows).
extension CPUKernels {
    /// `y[r, :] = exp(x[r, :] − max) / Σ exp(x[r, :] − max)`; x and y may be the same memory.
    public static func softmax(_ x: UnsafePointer<Float>, rows: Int, width: Int, into y: UnsafeMutablePointer<Float>) {
        forEachRow(rows: rows, width: width) { r in
            let xr = x + r * width, yr = y + r * width
            let m = VectorMath.maximum(xr, width)
            let sum = VectorMath.exponentialSum(xr, width, minus: m, into: yr)
            VectorMath.scale(yr, width, by: 1 / sum)
        }
    }

    /// `y[r, :] = x[r, :] − max − log Σ exp(x[r, :] − max)`; x and y may be the same memory.
    public static func logSoftmax(_ x: UnsafePointer<Float>, rows: Int, width: Int, into y: UnsafeMutablePointer<Float>) {
        forEachRow(rows: rows, width: width) { r in
            let xr = x + r * width, yr = y + r * width
            let m = VectorMath.maximum(xr, width)
            let logSum = m + log(VectorMath.exponentialSum(xr, width, minus: m, into: nil))
            VectorMath.shift(xr, width, by: -logSum, into: yr)
        }
    }
}

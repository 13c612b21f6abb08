/// Layer norm and RMS norm over the last dimension, one row at a time, rows split over threads when
/// the tensor is large. Statistics are accumulated in f32 over 16 lanes; the layer-norm variance is
/// computed in a second pass around the mean (biased, as PyTorch).
extension CPUKernels {
    /// `y = (x − mean) / sqrt(var + eps) · weight + bias` per row; x and y may be the same memory.
    public static func layerNorm(
        _ x: UnsafePointer<Float>, rows: Int, width: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        eps: Float, into y: UnsafeMutablePointer<Float>
    ) {
        guard width > 0 else { return }
        forEachRow(rows: rows, width: width) { r in
            let xr = x + r * width
            let mean = VectorMath.sum(xr, width) / Float(width)
            let variance = VectorMath.squaredDeviation(xr, width, around: mean) / Float(width)
            VectorMath.affine(xr, width, shift: mean, factor: 1 / (variance + eps).squareRoot(),
                              weight: weight, bias: bias, into: y + r * width)
        }
    }

    /// `y = x / sqrt(mean(x²) + eps) · weight` per row; x and y may be the same memory.
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, rows: Int, width: Int, weight: UnsafePointer<Float>, eps: Float,
        into y: UnsafeMutablePointer<Float>
    ) {
        guard width > 0 else { return }
        forEachRow(rows: rows, width: width) { r in
            let xr = x + r * width
            let meanSquare = VectorMath.squaredDeviation(xr, width, around: 0) / Float(width)
            VectorMath.affine(xr, width, shift: 0, factor: 1 / (meanSquare + eps).squareRoot(),
                              weight: weight, bias: nil, into: y + r * width)
        }
    }
}

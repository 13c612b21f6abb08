import Compute

/// Global-norm gradient clipping exactly as `torch.nn.utils.clip_grad_norm_`: the total norm is the
/// 2-norm of every gradient together (√ of the sum over parameters of their squared norms); when
/// `clip_coef = max_norm / (total_norm + 1e-6)` is below 1, every gradient is scaled by it.
public enum GradientClipping {
    /// The total norm of the flat gradient buffer `grads` **before** clipping (what torch returns and
    /// what training logs report). With `maxNorm` nil, or a non-finite norm, nothing is scaled.
    @discardableResult
    public static func clip(_ grads: Tensor, maxNorm: Float?, ops: any TrainingOps) throws -> Double {
        let total = try ops.sumOfSquares(grads).squareRoot()
        guard let maxNorm, total.isFinite else { return total }
        // torch computes the coefficient in the gradients' dtype (f32).
        let coefficient = maxNorm / (Float(total) + 1e-6)
        if coefficient < 1 { ops.scale(grads, by: coefficient, into: grads) }
        return total
    }
}

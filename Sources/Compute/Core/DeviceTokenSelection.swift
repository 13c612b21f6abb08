/// A backend that can pick tokens where the logits are, so that decoding brings back a few numbers per
/// sequence instead of a whole row of logits (the CUDA backend; on the CPU the logits are already on the
/// host and the `Sampler` reads them in place).
public protocol DeviceTokenSelection: ComputeBackend {
    /// `out[n] = argmax(x[n, :])`, the lowest index on ties (as `Sampler` picks). x: [N, V] f32; out: [N] i32.
    func argmax(_ x: Tensor, into out: Tensor)

    /// The greedy token of each row of `logits` ([N, V] f32 on the device) — the argmax, lowest index on
    /// ties — with its log-softmax value, computed on the device: one download of 2N numbers.
    func greedyTokens(_ logits: Tensor) throws -> [(token: Int32, logprob: Float)]

    /// Samples one token per row of `logits` ([N, V] f32 on the device) with `uniforms[n]` in [0, 1),
    /// and returns each token with its raw log-probability (log-softmax of the unmodified logits, as
    /// `Sampler` reports). Probabilities are `softmax(logits / temperature)` (temperature > 0), truncated
    /// to the `topK` most likely tokens (≤ 0 or ≥ V: off), then to the smallest most-likely set holding
    /// `topP` of their mass (1: off).
    ///
    /// The same distribution as `Sampler.sample`, but not the same token for the same uniform: the draw
    /// is an inverse CDF over the kept tokens in index order, where the host walks them in order of
    /// probability when it truncates; and tokens tied with the k-th most likely are all kept, where the
    /// host keeps exactly k. (CPU and GPU logits differ in their last bits anyway, so a seed never
    /// reproduced tokens across them.) Deterministic: the same logits and uniforms give the same tokens
    /// on every device, which keeps tensor-parallel ranks in step.
    func sampleTokens(_ logits: Tensor, temperature: Float, topK: Int, topP: Float,
                      uniforms: [Float]) throws -> [(token: Int32, logprob: Float)]
}

/// A backend that can pick tokens where the logits are, so that greedy decoding brings back a few
/// numbers per sequence instead of a whole row of logits (the CUDA backend; on the CPU the logits are
/// already on the host and the `Sampler` reads them in place).
public protocol DeviceTokenSelection: ComputeBackend {
    /// `out[n] = argmax(x[n, :])`, the lowest index on ties (as `Sampler` picks). x: [N, V] f32; out: [N] i32.
    func argmax(_ x: Tensor, into out: Tensor)
}

/// Steps recorded once per shape and replayed (CUDA graphs), made by a backend that can
/// (``StepRecording``) for one owner — a generator — whose model and KV cache the recorded steps use.
///
/// A decode step launches a few hundred small kernels; replaying them as one graph removes the host's
/// launch cost per kernel, which is most of a small batch's step.
public protocol StepGraphs: AnyObject {
    /// `forward(step)`. The first step of a shape (token count, sequence count, table width, logit rows)
    /// runs eagerly and is then recorded reading the indices from a buffer of the recording; a later step
    /// of that shape copies its indices there and replays. `forward` must read nothing from the host but
    /// `step` and allocate the same shapes every time (the model's `finalHidden(step:cache:)` does).
    /// The tensor returned by a replay belongs to the recording: read it before the next call.
    func run(_ step: StepIndices, _ forward: (StepIndices) throws -> Tensor) throws -> Tensor

    /// Shapes recorded so far.
    var recordedShapes: Int { get }
}

/// A backend that can record steps (``StepGraphs``).
public protocol StepRecording: ComputeBackend {
    func makeStepGraphs() -> any StepGraphs
}

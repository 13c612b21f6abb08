import CCUDA

/// ``StepGraphs`` on a GPU: one CUDA graph per step shape, captured from the backend's stream.
///
/// Memory: a graph writes its activations at the addresses it was captured with, so captures allocate
/// from a pool of their own that nothing else draws from; graphs share its blocks (they replay one at a
/// time, and each rewrites its intermediates every replay). A graph keeps its output and its indices
/// buffer. Workspaces a graph uses that later grow are kept, not freed (`CUDATrainingState.retired`).
/// Weights and the KV cache are read where they are: weight sync writes in place, and sleep/wake maps
/// new memory at the same addresses, so graphs stay valid across both.
final class CUDAStepGraphs: StepGraphs, @unchecked Sendable {
    let backend: CUDABackend
    private let pool: CUDAMemoryPool
    private var graphs: [Shape: Graph] = [:]
    /// Shapes whose capture failed: they run eagerly.
    private var unrecordable: Set<Shape> = []

    struct Shape: Hashable {
        var tokens, sequences, tableWidth, logitRows, frequencies: Int
        init(_ p: PackedStepIndices) {
            (tokens, sequences, tableWidth, logitRows, frequencies) = (p.tokens, p.sequences, p.tableWidth, p.logitRows, p.frequencies)
        }
    }

    final class Graph {
        let backend: CUDABackend
        let exec: CUgraphExec
        /// The buffer the graph reads its step's indices from; a replay writes the new ones there.
        let indices: CUDABackend.DeviceStepIndices
        let output: Tensor
        init(backend: CUDABackend, exec: CUgraphExec, indices: CUDABackend.DeviceStepIndices, output: Tensor) {
            (self.backend, self.exec, self.indices, self.output) = (backend, exec, indices, output)
        }
        deinit {
            let (driver, exec) = (backend.driver, exec)
            backend.cudaDevice.withContext { _ = driver.cuGraphExecDestroy(exec) }
        }
    }

    init(backend: CUDABackend) {
        self.backend = backend
        pool = CUDAMemoryPool(allocator: backend.allocator)
    }

    var recordedShapes: Int { graphs.count }

    func run(_ step: StepIndices, _ forward: (StepIndices) throws -> Tensor) throws -> Tensor {
        guard let indices = step.backendCopy as? CUDABackend.DeviceStepIndices else { return try forward(step) }
        let shape = Shape(indices.packed)
        if let graph = graphs[shape] {
            try backend.write(indices.packed.words, to: graph.indices.address(ofWord: 0, on: backend))
            try backend.launch(graph: graph.exec)
            return graph.output
        }
        let result = try forward(step)
        if unrecordable.contains(shape) { return result }
        // The first step of this shape ran eagerly (its result is this step's); now record one that reads
        // its indices from a buffer the graph keeps.
        let kept = CUDABackend.DeviceStepIndices(packed: indices.packed)
        _ = try kept.address(ofWord: 0, on: backend)  // uploaded now: a capture copies nothing
        if let (exec, output) = try backend.record(pool: pool, { try forward(step.with(backendCopy: kept)) }) {
            graphs[shape] = Graph(backend: backend, exec: exec, indices: kept, output: output)
        } else {
            unrecordable.insert(shape)
        }
        return result
    }
}

extension CUDABackend: StepRecording {
    public func makeStepGraphs() -> any StepGraphs { CUDAStepGraphs(backend: self) }

    /// Captures `body`'s ops on the stream into an instantiated graph, allocating from `pool`; nil when
    /// the capture failed (an op that cannot be captured): the ops did not run, the backend is unharmed,
    /// and the caller runs the step eagerly instead. Throws what `body` throws for other reasons.
    func record(pool: CUDAMemoryPool, _ body: () throws -> Tensor) throws -> (CUgraphExec, Tensor)? {
        try cudaDevice.sync { () throws -> (CUgraphExec, Tensor)? in
            if let failure = firstFailure { throw failure }
            let saved = trainingState.pool
            trainingState.pool = pool
            trainingState.recording = true
            defer {
                trainingState.pool = saved
                trainingState.recording = false
                // The capture ran nothing: no conversion it "made" is in the workspaces.
                trainingState.conversions = []
            }
            try CUDAError.check(driver.cuStreamBeginCapture(stream.handle, CU_STREAM_CAPTURE_MODE_RELAXED), "cuStreamBeginCapture_v2")
            var output: Tensor?
            var bodyError: (any Error)?
            do { output = try body() } catch { bodyError = error }
            var graph: CUgraph?
            let ended = driver.cuStreamEndCapture(stream.handle, &graph)
            defer { if let graph { _ = driver.cuGraphDestroy(graph) } }
            // An op refused during capture left the backend's first failure: it belongs to the capture, not
            // to the device (nothing ran), so it is cleared and the step stays eager.
            let captureFailed = clearFailure()
            if let bodyError, !captureFailed { throw bodyError }
            guard !captureFailed, bodyError == nil, ended == CUDA_SUCCESS, let graph, let output else { return nil }
            var exec: CUgraphExec?
            guard driver.cuGraphInstantiateWithFlags(&exec, graph, 0) == CUDA_SUCCESS, let exec else { return nil }
            trainingState.graphsRecorded = true
            return (exec, output)
        }
    }

    /// Queues a recorded graph on the stream.
    func launch(graph: CUgraphExec) throws {
        try cudaDevice.sync {
            if let failure = firstFailure { throw failure }
            trainingState.operation &+= 1
            trainingState.conversions = []
            try CUDAError.check(driver.cuGraphLaunch(graph, stream.handle), "cuGraphLaunch")
        }
    }
}

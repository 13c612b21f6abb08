/// f32 copies of a step's bf16 biases, so that cuBLASLt adds them in its epilogue. It has no kernel
/// taking a bf16 bias with an f32 output; without the copies every biased linear of more than a
/// few rows first writes its bias into y in a pass of its own (a launch and a write of y) and then
/// accumulates onto it. One launch per step refreshes every copy from the live biases — inside a recorded
/// step too — so the step after a weight sync adds the new biases.
extension CUDABackend {
    public func refreshBiasCopies(_ biases: [Tensor], rows: Int) {
        // A few rows run the skinny kernels, which read the biases as they are.
        guard Self.biasEpilogue, rows > SkinnyLinearKernels.rows else { return }
        // bf16 only: with f16 weights the copies gave wrong sums on an H200 (cuda-check, session 6; not yet
        // understood whether the copy or cuBLASLt's f16 epilogue is at fault), so f16 keeps the fill pass.
        let sixteen = biases.filter { $0.dtype == .bf16 }
        if sixteen.isEmpty { return }
        let sources = sixteen.map { address($0, "bias") }
        perform("biasCopies") {
            let state = trainingState
            if sources != state.biasTableSources {
                if state.recording { throw ComputeError("the bias copies must be made before a graph capture") }
                var words: [Int32] = []
                for (bias, source) in zip(sixteen, sources) {
                    if (state.biasCopies[source]?.byteCount ?? 0) < bias.count * 4 {
                        if state.graphsRecorded, let old = state.biasCopies[source] { state.retired.append(old) }
                        state.biasCopies[source] = try allocator.allocate(byteCount: bias.count * 4)
                    }
                    let entry = [Int64(bitPattern: source), Int64(bitPattern: state.biasCopies[source]!.deviceAddress),
                                 Int64(bias.count), 1]
                    for value in entry { words += [Int32(truncatingIfNeeded: value), Int32(truncatingIfNeeded: value >> 32)] }
                }
                if state.graphsRecorded, let old = state.biasTable { state.retired.append(old) }
                let table = try allocator.allocate(byteCount: words.count * 4)
                try write(words, to: table.deviceAddress)
                state.biasTable = table
                state.biasTableSources = sources
            }
            let longest = sixteen.map(\.count).max()!
            try launch("convert_many_to_f32", grid: (min((longest + 255) / 256, 64), sixteen.count, 1), block: (256, 1, 1),
                       [.address(state.biasTable!.deviceAddress)])
            state.biasCopiesActive = true
        }
    }

    public func releaseBiasCopies() {
        try? cudaDevice.sync { trainingState.biasCopiesActive = false }
    }

    /// The f32 copy of the bias at `address` while copies are in use (on the device's thread).
    func biasCopy(of address: UInt64) -> UInt64? {
        guard trainingState.biasCopiesActive else { return nil }
        return trainingState.biasCopies[address]?.deviceAddress
    }
}

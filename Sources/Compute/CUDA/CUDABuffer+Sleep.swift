extension CUDABuffer {
    /// The shareable (virtual-memory) allocation behind this buffer or the buffer it views, if any.
    private var shareableAllocation: CUDAShareableAllocation? {
        switch owner {
        case .shareable(let allocation, _): allocation
        case .view(let parent): parent.shareableAllocation
        case .allocation, .mapping, .pooled: nil
        }
    }

    /// Whether ``releasePhysicalMemory()`` can free this buffer's memory (a `cuMemCreate` allocation).
    public var canReleasePhysicalMemory: Bool { shareableAllocation != nil }

    /// Whether physical memory backs the buffer now (false between a release and a restore).
    public var isPhysicallyBacked: Bool { shareableAllocation?.isBacked ?? true }

    /// Unmaps and releases the physical memory under the whole allocation, keeping its addresses
    /// reserved: tensors over it stay valid as values but must not be touched until
    /// ``restorePhysicalMemory()``. Another process that mapped it keeps that memory alive until it unmaps.
    public func releasePhysicalMemory() throws(ComputeError) {
        guard let allocation = shareableAllocation else {
            throw ComputeError("this device memory is a cuMemAlloc allocation or a mapping; only cuMemCreate memory can be released in place")
        }
        allocation.releasePhysical()
    }

    /// Maps fresh physical memory (contents undefined) at the same addresses.
    public func restorePhysicalMemory() throws(ComputeError) {
        guard let allocation = shareableAllocation else {
            throw ComputeError("this device memory is a cuMemAlloc allocation or a mapping; only cuMemCreate memory can be restored in place")
        }
        do {
            try allocation.restorePhysical()
        } catch {
            throw ComputeError("cannot map device memory again after a sleep: \(error)")
        }
    }
}

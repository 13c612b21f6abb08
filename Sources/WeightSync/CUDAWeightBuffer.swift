import Compute
import Synchronization

/// Weights on a GPU as ONE allocation laid out by a ``WeightLayout``: every parameter is a view into
/// it, and an export is one handle of the whole allocation plus the layout. Processes on the same GPU
/// open the handle once and copy shards out of it (a trainer's buffer) or into it (an engine rank's).
/// The allocation is shareable as a file descriptor where the device supports it, else a `cuMemAlloc`
/// shared by CUDA IPC (``CUDAMemorySharing/preferred(for:)``).
public final class CUDAWeightBuffer: ExportableWeightBuffer, @unchecked Sendable {
    public let layout: WeightLayout
    /// The one allocation holding every parameter.
    public let buffer: CUDABuffer
    public var device: Device { buffer.device }
    /// Bumped by the owner whenever it changes the weights.
    public var version: UInt64 = 0
    /// The layout's fingerprint, computed once (the layout never changes).
    public let layoutFingerprint: UInt64
    // An allocation's handle is the same for its whole life: asked for once.
    private let handle = Mutex<MemoryHandle?>(nil)

    /// Allocates `layout.totalBytes` in one allocation from `allocator` (inside its budget), zeroed.
    public func zero() throws {
        try buffer.fill(byte: 0)
    }

    public init(layout: WeightLayout, allocator: CUDAAllocator, sharing: CUDAMemorySharing? = nil) throws {
        self.layout = layout
        buffer = try allocator.allocate(byteCount: layout.totalBytes, sharing: sharing ?? CUDAMemorySharing.preferred(for: allocator.device))
        try buffer.fill(byte: 0)
        layoutFingerprint = layout.fingerprint
    }

    /// Allocates `layout.totalBytes` on `device` outside any budget, zeroed.
    public init(layout: WeightLayout, device: CUDADevice, sharing: CUDAMemorySharing? = nil) throws {
        self.layout = layout
        buffer = try device.allocate(byteCount: layout.totalBytes, sharing: sharing ?? CUDAMemorySharing.preferred(for: device))
        try buffer.fill(byte: 0)
        layoutFingerprint = layout.fingerprint
    }

    public func tensor(_ name: String) -> Tensor? {
        guard let e = layout[name] else { return nil }
        return buffer.tensor(dtype: e.dtype, shape: e.shape, byteOffset: e.offset)
    }

    public var tensors: [String: Tensor] {
        var out: [String: Tensor] = [:]
        for e in layout.entries { out[e.name] = buffer.tensor(dtype: e.dtype, shape: e.shape, byteOffset: e.offset) }
        return out
    }

    /// The handle of the whole allocation (made once) and the layout.
    public func export() throws -> ExportedWeights {
        ExportedWeights(handle: try memoryHandle(), layout: layout, version: version)
    }

    public func exportNotice() throws -> WeightSyncNotice {
        WeightSyncNotice(handle: try memoryHandle(), version: version, layoutFingerprint: layoutFingerprint)
    }

    private func memoryHandle() throws -> MemoryHandle {
        if let known = handle.withLock({ $0 }) { return known }
        let made = try buffer.exportHandle(offset: 0, byteCount: layout.totalBytes)
        handle.withLock { $0 = made }
        return made
    }

    /// Releases the buffer's physical memory, keeping its addresses (a level-2 sleep). The handle
    /// exported before goes stale: peers must fetch the new one after ``restoreMemory()``.
    public func releaseMemory() throws {
        try buffer.releasePhysicalMemory()
        handle.withLock { $0 = nil }
    }

    /// Maps fresh memory at the same addresses; its contents are undefined until weights are written.
    public func restoreMemory() throws {
        try buffer.restorePhysicalMemory()
    }
}

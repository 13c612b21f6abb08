import Compute
import Synchronization

/// A trainer's weights on a GPU as ONE `cuMemAlloc` allocation laid out by a ``WeightLayout``: every
/// parameter is a view into it, and an export is one CUDA IPC handle of the whole allocation plus the
/// layout. Engine ranks on the same GPU open the handle once and copy their shards out of it.
public final class CUDAWeightBuffer: ExportableWeightBuffer, @unchecked Sendable {
    public let layout: WeightLayout
    /// The one allocation holding every parameter.
    public let buffer: CUDABuffer
    public var device: Device { buffer.device }
    /// Bumped by the owner whenever it changes the weights.
    public var version: UInt64 = 0
    /// The layout's fingerprint, computed once (the layout never changes).
    public let layoutFingerprint: UInt64
    // `cuIpcGetMemHandle` of an allocation is the same for its whole life: asked for once.
    private let handle = Mutex<MemoryHandle?>(nil)

    /// Allocates `layout.totalBytes` in one allocation from `allocator` (inside its budget), zeroed.
    public init(layout: WeightLayout, allocator: CUDAAllocator) throws {
        self.layout = layout
        buffer = try allocator.allocate(byteCount: layout.totalBytes)
        try buffer.fill(byte: 0)
        layoutFingerprint = layout.fingerprint
    }

    /// Allocates `layout.totalBytes` on `device` outside any budget, zeroed.
    public init(layout: WeightLayout, device: CUDADevice) throws {
        self.layout = layout
        buffer = try device.allocate(byteCount: layout.totalBytes)
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

    /// The IPC handle of the whole allocation (asked of the driver once) and the layout.
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
}

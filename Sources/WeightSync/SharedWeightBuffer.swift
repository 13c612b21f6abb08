import Compute
import Models

/// A trainer's weights as one flat exportable buffer: every parameter is a view into it, so exporting
/// is handing out one handle — no per-tensor handles, no copy on the trainer side. This is the kind
/// for virtual CPU devices (shared memory); ``CUDAWeightBuffer`` is the GPU kind.
public final class SharedWeightBuffer: ExportableWeightBuffer, @unchecked Sendable {
    public let layout: WeightLayout
    public let memory: HostMemory
    public let identity: SharedMemoryIdentity
    /// Bumped by the owner whenever it changes the weights.
    public var version: UInt64 = 0
    /// The layout's fingerprint, computed once (the layout never changes).
    public let layoutFingerprint: UInt64

    /// Allocates a zeroed shared-memory buffer for `layout` on a (virtual CPU) device. `name` is the
    /// memfd's name, as `/proc/<pid>/fd` and `maps` show it.
    public func zero() {
        memory.baseAddress.initializeMemory(as: UInt8.self, repeating: 0, count: layout.totalBytes)
    }

    public init(layout: WeightLayout, device: Device, name: String = "colocate-weights") throws(ComputeError) {
        guard device.kind == .cpu else { throw ComputeError("shared weight buffers on \(device.kind) are made by the CUDA backend") }
        self.layout = layout
        memory = try HostMemory.allocateShared(byteCount: layout.totalBytes, device: device, name: name)
        identity = try SharedMemoryIdentity.of(fileDescriptor: memory.sharedFileDescriptor!)
        layoutFingerprint = layout.fingerprint
    }

    public var device: Device { memory.device }

    /// The parameter `name` as a tensor viewing the buffer.
    public func tensor(_ name: String) -> Tensor? {
        guard let e = layout[name] else { return nil }
        return Tensor(memory: memory, byteOffset: e.offset, dtype: e.dtype, shape: e.shape)
    }

    /// Every parameter, by name.
    public var tensors: [String: Tensor] {
        var out: [String: Tensor] = [:]
        for e in layout.entries { out[e.name] = Tensor(memory: memory, byteOffset: e.offset, dtype: e.dtype, shape: e.shape) }
        return out
    }

    /// The handle and layout engines need to read these weights.
    public func export() -> ExportedWeights {
        let handle = MemoryHandle(deviceUUID: memory.device.uuid, kind: .cpuSharedMemory, byteCount: layout.totalBytes,
                                  offset: 0, opaque: identity.bytes, ownerPID: identity.pid)
        return ExportedWeights(handle: handle, layout: layout, version: version)
    }

    public func exportNotice() -> WeightSyncNotice {
        let e = export()
        return WeightSyncNotice(handle: e.handle, version: e.version, layoutFingerprint: layoutFingerprint)
    }
}

import Cluster
import Compute
import Models
import WeightSync

/// The weights a trainer owns: a Hugging Face model loaded into one flat exportable buffer on the
/// trainer's device (shared memory of a virtual CPU device, or one `cuMemAlloc` on a GPU), in the
/// trainer's dtype (f32 master weights by default).
public final class TrainerWeights: @unchecked Sendable {
    public let config: ModelConfig
    public let table: ParameterTable
    public let buffer: any ExportableWeightBuffer
    /// The GPU backend holding the buffer; nil on CPU devices.
    let cuda: CUDABackend?

    /// Loads `directory` onto `device`; every parameter lands in its slot of the flat buffer.
    ///
    /// `memoryFraction` is the trainer's share of the device (its placement's fraction): what it
    /// allocates there counts against `memoryFraction × capacity`, as an engine rank's against its
    /// memory utilization, so a 0.4 trainer cannot take the memory its colocated engine ranks were
    /// promised. Weights over the share are refused before anything is allocated, on virtual CPU
    /// devices too; on a GPU the allocator enforces the same limit for everything after.
    public init(directory: String, device: Device, dtype: DType = .f32, memoryFraction: Double = 1) throws {
        let config = try ModelConfig.load(directory: directory)
        let table = ParameterTable(config: config)
        let layout = WeightLayout(table: table, dtype: dtype)
        guard memoryFraction > 0, memoryFraction <= 1 else {
            throw WeightSyncError("a trainer's memory fraction must be in (0, 1], got \(memoryFraction)")
        }
        let share = device.share(memoryFraction)
        guard layout.totalBytes <= share else {
            throw WeightSyncError("the trainer's \(dtype) weights need \(ByteCount.format(layout.totalBytes)) but its share of \(device.uuid) is \(memoryFraction) × \(ByteCount.format(device.capacity)) = \(ByteCount.format(share))")
        }
        switch device.kind {
        case .cpu:
            buffer = try SharedWeightBuffer(layout: layout, device: device)
            cuda = nil
        case .cuda:
            let gpu = try CUDA.load().device(uuid: device.uuid)
            let backend = try CUDABackend(device: gpu, memoryUtilization: memoryFraction)
            buffer = try CUDAWeightBuffer(layout: layout, allocator: backend.allocator)
            cuda = backend
        }
        let views = buffer.tensors
        _ = try ModelLoader.load(directory: directory, dtype: dtype, backend: cuda) { name, _, _ in views[name]! }
        self.config = config
        self.table = table
    }

    public var byteCount: Int { buffer.layout.totalBytes }

    /// Sets every weight to zero (the seed's first step), whatever kind of buffer holds them.
    public func zero() throws {
        try buffer.zero()
        buffer.version += 1
    }

    /// Adds noise of standard deviation `scale` to every weight, seeded (a stand-in for an optimiser step
    /// in tests and benchmarks). On a GPU the new weights are made on the host and uploaded.
    public func perturb(seed: UInt64, scale: Float) throws {
        var rng = SplitMix64(seed: seed)
        // Uniform noise on [-w, w] has standard deviation w/√3. Uniform, not normal: a benchmark's
        // stand-in for an optimizer step should cost little beside the sync it precedes.
        let width = scale * Float(3).squareRoot()
        for (_, t) in buffer.tensors.sorted(by: { $0.key < $1.key }) {
            let updated = try Tensor.zeros(t.shape, dtype: .f32)
            let current = try cuda?.download(t).floats() ?? t.floats()
            let p = updated.pointer(Float.self)
            for i in 0..<t.count { p[i] = current[i] + (rng.nextUnitFloat() * 2 - 1) * width }
            if let cuda { try cuda.upload(updated, into: t) } else { t.copy(from: updated) }
        }
        buffer.version += 1
    }

    public func export() throws -> ExportedWeights { try buffer.export() }

    /// A pusher of these weights into engine ranks on the same device (push sync).
    public func makePusher() throws -> WeightPusher {
        try WeightPusher(source: buffer, config: config, backend: cuda)
    }
}

#if canImport(Glibc)
import Glibc
#endif

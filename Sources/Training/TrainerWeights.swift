import Compute
import Models
import WeightSync

/// The weights a trainer owns: a Hugging Face model loaded into one flat exportable buffer on the
/// trainer's device, in the trainer's dtype (f32 master weights by default).
public final class TrainerWeights: @unchecked Sendable {
    public let config: ModelConfig
    public let table: ParameterTable
    public let buffer: SharedWeightBuffer

    /// Loads `directory` onto `device`; every parameter lands in its slot of the flat buffer.
    public init(directory: String, device: Device, dtype: DType = .f32) throws {
        let config = try ModelConfig.load(directory: directory)
        let table = ParameterTable(config: config)
        let layout = WeightLayout(table: table, dtype: dtype)
        let buffer = try SharedWeightBuffer(layout: layout, device: device)
        let views = buffer.tensors
        _ = try ModelLoader.load(directory: directory, dtype: dtype) { name, _, _ in views[name]! }
        self.config = config
        self.table = table
        self.buffer = buffer
    }

    public var byteCount: Int { buffer.layout.totalBytes }

    /// Sets every weight to zero (the seed's first step).
    public func zero() {
        memset(buffer.memory.baseAddress, 0, buffer.layout.totalBytes)
        buffer.version += 1
    }

    /// Adds N(0, scale²) noise to every weight, seeded (a stand-in optimiser step for tests and benchmarks).
    public func perturb(seed: UInt64, scale: Float) {
        var rng = SplitMix64(seed: seed)
        for (_, t) in buffer.tensors.sorted(by: { $0.key < $1.key }) {
            let noise = try! Tensor.zeros(t.shape, dtype: .f32)
            RandomWeights.fillNormal(noise.pointer(Float.self), count: t.count, std: scale, rng: &rng)
            let current = t.floats()
            let p = noise.pointer(Float.self)
            for i in 0..<t.count { p[i] += current[i] }
            t.copy(from: noise)
        }
        buffer.version += 1
    }

    /// Sum of absolute values of every weight (a cheap fingerprint for reports).
    public func absoluteSum() -> Double {
        buffer.tensors.values.reduce(0) { acc, t in acc + t.floats().reduce(0) { $0 + Double(abs($1)) } }
    }

    public func export() -> ExportedWeights { buffer.export() }
}

#if canImport(Glibc)
import Glibc
#endif

import Compute
import Models

/// An engine rank's weights on a GPU as one allocation: its shard of every parameter in table order,
/// each on a 256-byte boundary (as ``WeightLayout`` places the trainer's). With tensor-parallel size 1
/// and the trainer's dtype the two layouts coincide, and ``ShardCopyPlan`` merges a whole sync into
/// one device-to-device copy. Pass ``weights`` views to `ModelLoader.load(allocate:)` to load into it.
public final class CUDAEngineWeights: @unchecked Sendable {
    public let buffer: CUDABuffer
    /// This rank's shard of every parameter, by Hugging Face name, viewing ``buffer``.
    public let weights: [String: Tensor]

    /// Allocates (from `backend`'s budget) and zeroes one buffer for the shards of `table` at
    /// tensor-parallel size `worldSize`, in `dtype`.
    public init(table: ParameterTable, dtype: DType, worldSize: Int, backend: CUDABackend) throws {
        let (places, total) = Self.layout(table: table, dtype: dtype, worldSize: worldSize)
        let buffer = try backend.allocator.allocate(byteCount: total)
        try buffer.fill(byte: 0)
        var weights: [String: Tensor] = [:]
        for p in places {
            weights[p.name] = buffer.tensor(dtype: dtype, shape: p.shape, byteOffset: p.offset)
        }
        self.buffer = buffer
        self.weights = weights
    }

    public var byteCount: Int { buffer.byteCount }

    /// Where each shard goes, in table order, and the bytes of the whole: what another process that
    /// maps this buffer (a trainer pushing weights into it) needs to address it.
    public static func layout(table: ParameterTable, dtype: DType, worldSize: Int) -> (places: [(name: String, shape: [Int], offset: Int)], totalBytes: Int) {
        var places: [(name: String, shape: [Int], offset: Int)] = []
        var total = 0
        for spec in table.specs {
            let shape = spec.shard.shardShape(of: spec.shape, worldSize: worldSize)
            places.append((spec.name, shape, total))
            let bytes = shape.reduce(1, *) * dtype.byteSize
            total += (bytes + WeightLayout.alignment - 1) / WeightLayout.alignment * WeightLayout.alignment
        }
        return (places, total)
    }
}

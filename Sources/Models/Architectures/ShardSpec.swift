import Compute

/// How one Hugging Face parameter is split across tensor-parallel ranks, the way Megatron and vLLM split
/// them.
public enum ShardSpec: String, Sendable, Codable, Equatable {
    /// Every rank holds the whole tensor (norms, embeddings, lm_head, row-parallel biases).
    case replicated
    /// Split along dimension 0 — the output features of a linear layer (q/k/v, fc1, gate/up) and its bias.
    case column
    /// Split along dimension 1 — the input features of a linear layer (out_proj/o_proj, fc2, down_proj).
    case row

    /// Shape of rank `rank`'s shard of a tensor of `shape`.
    public func shardShape(of shape: [Int], worldSize: Int) -> [Int] {
        var s = shape
        switch self {
        case .replicated: break
        case .column: s[0] /= worldSize
        case .row: s[1] /= worldSize
        }
        return s
    }

    /// Whether `shape` divides evenly across `worldSize` ranks.
    public func divides(_ shape: [Int], worldSize: Int) -> Bool {
        switch self {
        case .replicated: true
        case .column: shape.count >= 1 && shape[0] % worldSize == 0
        case .row: shape.count == 2 && shape[1] % worldSize == 0
        }
    }

    /// The shard as a 2-D strided block of the full tensor, in elements: `rows` rows of `columns`
    /// contiguous elements, starting at `offset`, consecutive rows `pitch` apart. Copying a shard (on
    /// load, on every weight sync) is one 2-D copy — a `cuMemcpy2D` on GPUs.
    public func block(of shape: [Int], rank: Int, worldSize: Int) -> (offset: Int, rows: Int, columns: Int, pitch: Int) {
        let total = shape.reduce(1, *)
        switch self {
        case .replicated:
            return (0, 1, total, total)
        case .column:
            let inner = shape.dropFirst().reduce(1, *)
            let rows = shape[0] / worldSize
            return (rank * rows * inner, 1, rows * inner, rows * inner)
        case .row:
            let cols = shape[1] / worldSize
            return (rank * cols, shape[0], cols, shape[1])
        }
    }

    /// Copies rank `rank`'s shard of the full tensor at `source` (dtype `sourceType`, shape `shape`)
    /// into the contiguous `destination` (dtype `destinationType`), converting on the way.
    public func copyShard(
        from source: UnsafeRawPointer, _ sourceType: DType, shape: [Int],
        to destination: UnsafeMutableRawPointer, _ destinationType: DType,
        rank: Int, worldSize: Int
    ) {
        let b = block(of: shape, rank: rank, worldSize: worldSize)
        for r in 0..<b.rows {
            DTypeConversion.convert(
                from: source + (b.offset + r * b.pitch) * sourceType.byteSize, sourceType,
                to: destination + r * b.columns * destinationType.byteSize, destinationType,
                count: b.columns)
        }
    }
}

/// One parameter of an architecture: its Hugging Face name, full shape and tensor-parallel split.
public struct ParameterSpec: Sendable, Codable, Equatable {
    public var name: String
    public var shape: [Int]
    public var shard: ShardSpec

    public init(_ name: String, _ shape: [Int], _ shard: ShardSpec = .replicated) {
        self.name = name
        self.shape = shape
        self.shard = shard
    }

    public var count: Int { shape.reduce(1, *) }
}

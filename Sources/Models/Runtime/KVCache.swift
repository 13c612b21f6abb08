import Compute

/// Paged key/value cache of one model replica (one tensor-parallel rank): per layer, a key and a value
/// tensor of `[numBlocks · blockSize, kvHeads, headDim]` (f32, or the 16-bit type of a GPU model's
/// weights, as a bf16 model in PyTorch keeps it), handed out in blocks by `BlockAllocator`.
public final class KVCache: @unchecked Sendable {
    public let blockSize: Int
    public let numBlocks: Int
    public let dtype: DType
    public let keys: [Tensor]
    public let values: [Tensor]

    /// Bytes one block takes across all layers (keys and values) for a rank holding `kvHeads` heads.
    public static func bytesPerBlock(layers: Int, kvHeads: Int, headDim: Int, blockSize: Int, dtype: DType = .f32) -> Int {
        2 * layers * blockSize * kvHeads * headDim * dtype.byteSize
    }

    public convenience init(layers: Int, kvHeads: Int, headDim: Int, blockSize: Int, numBlocks: Int, dtype: DType = .f32,
                            backend: any ComputeBackend) throws(ComputeError) {
        let bytes = Self.bytesPerBlock(layers: layers, kvHeads: kvHeads, headDim: headDim, blockSize: blockSize, dtype: dtype) * numBlocks
        let storage = try backend.zeros([bytes / DType.f32.byteSize], dtype: .f32)
        self.init(layers: layers, kvHeads: kvHeads, headDim: headDim, blockSize: blockSize, numBlocks: numBlocks, dtype: dtype, storage: storage)
    }

    /// A cache laid out in `storage`, one flat tensor of at least `bytesPerBlock · numBlocks` bytes:
    /// every layer's keys, then values, are views of it, so the whole cache is one allocation that a
    /// sleep can release and a wake restore at the same addresses.
    public init(layers: Int, kvHeads: Int, headDim: Int, blockSize: Int, numBlocks: Int, dtype: DType = .f32, storage: Tensor) {
        self.blockSize = blockSize
        self.numBlocks = numBlocks
        self.dtype = dtype
        let shape = [numBlocks * blockSize, kvHeads, headDim]
        let layerBytes = shape.reduce(1, *) * dtype.byteSize
        precondition(storage.isContiguous && storage.byteCount >= 2 * layers * layerBytes, "KV cache storage of \(storage.byteCount) bytes is too small")
        func view(_ i: Int) -> Tensor { storage.view(byteOffset: i * layerBytes, dtype: dtype, shape: shape) }
        keys = (0..<layers).map { view(2 * $0) }
        values = (0..<layers).map { view(2 * $0 + 1) }
        self.storage = storage
    }

    /// The one allocation every layer's keys and values view.
    public let storage: Tensor

    public var byteCount: Int { (keys + values).reduce(0) { $0 + $1.byteCount } }
}

/// Hands out cache blocks to sequences; a sequence grows block by block as it decodes.
public struct BlockAllocator: Sendable {
    public let blockSize: Int
    private var free: [Int32]

    public init(numBlocks: Int, blockSize: Int) {
        self.blockSize = blockSize
        free = (0..<Int32(numBlocks)).reversed()
    }

    public var freeBlocks: Int { free.count }

    /// Blocks needed to hold `tokens` positions.
    public func blocks(forTokens tokens: Int) -> Int { (tokens + blockSize - 1) / blockSize }

    /// Grows `table` so it can hold `tokens` positions. Returns false (changing nothing) if the cache
    /// does not have enough free blocks.
    public mutating func reserve(_ table: inout [Int32], tokens: Int) -> Bool {
        let needed = blocks(forTokens: tokens) - table.count
        if needed <= 0 { return true }
        guard needed <= free.count else { return false }
        for _ in 0..<needed { table.append(free.removeLast()) }
        return true
    }

    public mutating func release(_ table: inout [Int32]) {
        free.append(contentsOf: table)
        table.removeAll()
    }
}

import Synchronization

/// Device blocks reused across training steps, as PyTorch's caching allocator (much simplified): a
/// released tensor's block goes back to a free list of its size class instead of to `cuMemFree` (which
/// synchronises the whole device), and the next allocation of that class takes it. A training step
/// allocates the same shapes every step, so after the first step nothing reaches the driver.
///
/// Stream order makes reuse safe: a block is only handed out again to ops queued after the ones that
/// used it, on the backend's one stream. Memory written by another stream (a collective on its own
/// stream, a copy batch) must not come from the pool, or must be synchronised before its tensor dies.
/// Blocks stay counted against the allocator's budget while cached; ``releaseCached()`` frees them.
public final class CUDAMemoryPool: @unchecked Sendable {
    public let allocator: CUDAAllocator
    private let free = Mutex<[Int: [CUDABuffer]]>([:])

    public init(allocator: CUDAAllocator) { self.allocator = allocator }

    /// Sizes are rounded to 512 B up to 1 MiB, then to 2 MiB, so that nearby sizes share blocks.
    static func sizeClass(_ bytes: Int) -> Int {
        bytes <= 1 << 20 ? max(512, (bytes + 511) & ~511) : (bytes + (2 << 20) - 1) & ~((2 << 20) - 1)
    }

    /// A buffer of `byteCount` bytes (not zeroed) over a cached block, or a new one.
    public func allocate(byteCount: Int) throws(ComputeError) -> CUDABuffer {
        let size = Self.sizeClass(byteCount)
        let block: CUDABuffer
        if let cached = free.withLock({ $0[size]?.popLast() }) {
            block = cached
        } else {
            do {
                block = try allocator.allocate(byteCount: size)
            } catch {
                // Over budget with blocks of other sizes cached: give those back and try once more.
                guard cachedBytes > 0 else { throw error }
                releaseCached()
                block = try allocator.allocate(byteCount: size)
            }
        }
        return CUDABuffer(device: block.cudaDevice, address: block.deviceAddress, byteCount: byteCount, owner: .pooled(self, block: block))
    }

    func give(_ block: CUDABuffer) {
        free.withLock { $0[block.byteCount, default: []].append(block) }
    }

    /// Bytes held in free blocks.
    public var cachedBytes: Int { free.withLock { $0.reduce(0) { $0 + $1.key * $1.value.count } } }

    /// Frees every cached block (those in use come back later, and are cached again).
    public func releaseCached() {
        let blocks = free.withLock { free -> [CUDABuffer] in
            defer { free.removeAll() }
            return free.values.flatMap { $0 }
        }
        _ = blocks  // freed here, outside the lock
    }
}

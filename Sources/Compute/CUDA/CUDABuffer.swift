import CCUDA

/// Device memory that tensors view: a `cuMemAlloc` or shareable `cuMemCreate` allocation (freed with its
/// last owner, and returned to its ``CUDAAllocator`` budget), a mapping of another process's allocation
/// (closed with its last user), or a view into any of those.
public final class CUDABuffer: DeviceStorage, @unchecked Sendable {
    public let cudaDevice: CUDADevice
    public var device: Device { cudaDevice.device }
    public let byteCount: Int
    /// The `CUdeviceptr` of the first byte.
    public let deviceAddress: UInt64

    enum Owner {
        /// Our own `cuMemAlloc`; `budget` gets the bytes back on release.
        case allocation(budget: CUDAAllocator?)
        /// Our own `cuMemCreate` allocation, shareable as a file descriptor; `budget` gets its mapped
        /// size back on release.
        case shareable(CUDAShareableAllocation, budget: CUDAAllocator?)
        /// Another process's memory, mapped from its handle.
        case mapping(IPCMapping)
        /// A range of another buffer, which it keeps alive.
        case view(CUDABuffer)
        /// A block of a ``CUDAMemoryPool``, given back to it (not freed) on release.
        case pooled(CUDAMemoryPool, block: CUDABuffer)
    }
    let owner: Owner

    init(device: CUDADevice, address: UInt64, byteCount: Int, owner: Owner) {
        cudaDevice = device
        deviceAddress = address
        self.byteCount = byteCount
        self.owner = owner
    }

    deinit {
        switch owner {
        case .allocation(let budget):
            let (driver, address) = (cudaDevice.driver, deviceAddress)
            cudaDevice.withContext { _ = driver.cuMemFree(address) }
            budget?.release(byteCount: byteCount)
        case .shareable(let allocation, let budget):
            budget?.release(byteCount: allocation.size)  // the allocation itself goes with its last reference
        case .pooled(let pool, let block):
            pool.give(block)
        case .mapping, .view:
            break
        }
    }

    /// `byteCount` bytes at `offset`, as a buffer that keeps this one alive.
    public func view(offset: Int, byteCount count: Int) -> CUDABuffer {
        precondition(offset >= 0 && count >= 0 && offset + count <= byteCount, "view of \(count) bytes at \(offset) outside \(byteCount) bytes")
        return CUDABuffer(device: cudaDevice, address: deviceAddress + UInt64(offset), byteCount: count, owner: .view(self))
    }

    /// Whether this memory belongs to another process (mapped through an IPC handle).
    public var isMapping: Bool {
        switch owner {
        case .allocation, .shareable, .pooled: false
        case .mapping: true
        case .view(let parent): parent.isMapping
        }
    }

    /// A tensor over this memory.
    public func tensor(dtype: DType, shape: [Int], byteOffset: Int = 0) -> Tensor {
        precondition(byteOffset + shape.reduce(1, *) * dtype.byteSize <= byteCount, "tensor \(shape) \(dtype) exceeds \(byteCount) bytes")
        return Tensor(deviceStorage: self, byteOffset: byteOffset, dtype: dtype, shape: shape)
    }

    /// Sets `count` bytes at `offset` (all of the rest by default) to `value`, waiting for it.
    public func fill(byte value: UInt8, offset: Int = 0, byteCount count: Int? = nil) throws(CUDAError) {
        let count = count ?? (byteCount - offset)
        precondition(offset >= 0 && count >= 0 && offset + count <= byteCount)
        let (driver, address) = (cudaDevice.driver, deviceAddress + UInt64(offset))
        try cudaDevice.withContext { () throws(CUDAError) in
            try CUDAError.check(driver.cuMemsetD8Async(address, value, count, nil), "cuMemsetD8Async")
            try CUDAError.check(driver.cuCtxSynchronize(), "cuCtxSynchronize")
        }
    }

    /// Copies `count` host bytes into this buffer at `offset`, waiting for it.
    public func copy(fromHost source: UnsafeRawPointer, byteCount count: Int, offset: Int = 0) throws(CUDAError) {
        precondition(offset >= 0 && offset + count <= byteCount)
        try cudaDevice.copy(fromHost: source, to: deviceAddress + UInt64(offset), byteCount: count)
    }

    /// Copies `count` bytes at `offset` of this buffer to host memory, waiting for it.
    public func copy(toHost destination: UnsafeMutableRawPointer, byteCount count: Int, offset: Int = 0) throws(CUDAError) {
        precondition(offset >= 0 && offset + count <= byteCount)
        try cudaDevice.copy(from: deviceAddress + UInt64(offset), toHost: destination, byteCount: count)
    }
}

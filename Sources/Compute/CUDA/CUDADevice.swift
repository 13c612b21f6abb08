import CCUDA
import Synchronization

/// One GPU of this process: its primary context, and the one thread (``executor``) that runs its work.
///
/// Obtained from ``CUDA/device(_:)`` (one per device per process). Calls that need the context from
/// another thread (freeing memory from a `deinit`, say) push it on the calling thread for the call.
public final class CUDADevice: @unchecked Sendable {
    public let cuda: CUDA
    public let properties: CUDADeviceProperties
    /// The device as the cluster sees it (kind `.cuda`, ordinal, UUID, total memory as capacity).
    public var device: Device { properties.device }
    public var uuid: String { properties.device.uuid }
    public var ordinal: Int { properties.device.ordinal }
    /// The thread all of this device's work runs on, with the primary context current.
    public let executor: DeviceExecutor

    let driver: CUDADriver
    let handle: CUdevice
    let context: CUcontext
    let ipcMappings = Mutex<[[UInt8]: WeakIPCMapping]>([:])
    let kernelModules = Mutex<CUDAKernelModules?>(nil)

    init(cuda: CUDA, properties: CUDADeviceProperties) throws(CUDAError) {
        self.cuda = cuda
        self.properties = properties
        driver = cuda.driver
        var device: CUdevice = 0
        try CUDAError.check(driver.cuDeviceGet(&device, Int32(properties.device.ordinal)), "cuDeviceGet")
        handle = device
        var ctx: CUcontext?
        try CUDAError.check(driver.cuDevicePrimaryCtxRetain(&ctx, device), "cuDevicePrimaryCtxRetain")
        guard let ctx else { throw CUDAError(library: .driver, code: CUDAError.invalidContext.code, api: "cuDevicePrimaryCtxRetain") }
        context = ctx
        let driver = self.driver
        let transfer = UnsafeTransfer(ctx)
        executor = DeviceExecutor(name: "cuda:\(properties.device.ordinal)") {
            _ = driver.cuCtxSetCurrent(transfer.value)
        }
    }

    deinit {
        _ = driver.cuDevicePrimaryCtxRelease(handle)
    }

    /// Runs `body` on the device's thread (inline when already there), suspending the caller.
    public func run<T>(_ body: () throws -> T) async throws -> T { try await executor.run(body) }

    /// Runs `body` on the device's thread (inline when already there), blocking the caller.
    public func sync<T>(_ body: () throws -> T) throws -> T { try executor.sync(body) }

    /// Runs `body` with this device's context current on the calling thread: as is on the device's
    /// thread, else pushed for the call and popped after.
    package func withContext<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        if executor.isCurrent { return try body() }
        _ = driver.cuCtxPushCurrent(context)
        defer {
            var popped: CUcontext?
            _ = driver.cuCtxPopCurrent(&popped)
        }
        return try body()
    }

    /// Free and total memory of the device, in bytes (`cuMemGetInfo_v2`).
    public func memoryInfo() throws(CUDAError) -> (free: Int, total: Int) {
        try withContext { () throws(CUDAError) in
            var free = 0, total = 0
            try CUDAError.check(driver.cuMemGetInfo(&free, &total), "cuMemGetInfo_v2")
            return (free, total)
        }
    }

    /// Waits until all work queued on the device is done.
    public func synchronize() throws(CUDAError) {
        try withContext { () throws(CUDAError) in try CUDAError.check(driver.cuCtxSynchronize(), "cuCtxSynchronize") }
    }

    /// A new stream that does not synchronise with the legacy default stream.
    public func makeStream() throws(CUDAError) -> CUDAStream { try CUDAStream(device: self) }

    /// A new event; `timing` events can measure elapsed time between two records.
    public func makeEvent(timing: Bool = true) throws(CUDAError) -> CUDAEvent { try CUDAEvent(device: self, timing: timing) }

    /// `byteCount` bytes outside any budget (``CUDAAllocator`` enforces one): `cuMemAlloc` by default,
    /// or an allocation shared as a file descriptor (see ``CUDAMemorySharing``).
    public func allocate(byteCount: Int, sharing: CUDAMemorySharing = .ipc) throws(CUDAError) -> CUDABuffer {
        try allocate(byteCount: byteCount, sharing: sharing, budget: nil)
    }

    /// The allocation itself; `budget` (which already counted it) gets the bytes back on release.
    func allocate(byteCount: Int, sharing: CUDAMemorySharing, budget: CUDAAllocator?) throws(CUDAError) -> CUDABuffer {
        if sharing == .fileDescriptor {
            let allocation = try CUDAShareableAllocation(device: self, byteCount: byteCount)
            return CUDABuffer(device: self, address: allocation.address, byteCount: byteCount, owner: .shareable(allocation, budget: budget))
        }
        let address = try withContext { () throws(CUDAError) -> CUdeviceptr in
            var pointer: CUdeviceptr = 0
            try CUDAError.check(driver.cuMemAlloc(&pointer, max(byteCount, 1)), "cuMemAlloc_v2")
            return pointer
        }
        return CUDABuffer(device: self, address: address, byteCount: byteCount, owner: .allocation(budget: budget))
    }

    /// Copies `byteCount` bytes between two device addresses (any device: unified addressing), waiting for it.
    public func copy(from source: UInt64, to destination: UInt64, byteCount: Int) throws(CUDAError) {
        try withContext { () throws(CUDAError) in
            try CUDAError.check(driver.cuMemcpyDtoD(destination, source, byteCount), "cuMemcpyDtoD_v2")
        }
    }

    /// Copies host bytes to a device address, waiting for it.
    public func copy(fromHost source: UnsafeRawPointer, to destination: UInt64, byteCount: Int) throws(CUDAError) {
        try withContext { () throws(CUDAError) in
            try CUDAError.check(driver.cuMemcpyHtoD(destination, source, byteCount), "cuMemcpyHtoD_v2")
        }
    }

    /// Copies device bytes to host memory, waiting for it.
    public func copy(from source: UInt64, toHost destination: UnsafeMutableRawPointer, byteCount: Int) throws(CUDAError) {
        try withContext { () throws(CUDAError) in
            try CUDAError.check(driver.cuMemcpyDtoH(destination, source, byteCount), "cuMemcpyDtoH_v2")
        }
    }
}

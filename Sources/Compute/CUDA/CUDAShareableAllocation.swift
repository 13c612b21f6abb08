#if canImport(Glibc)
import Glibc
#endif
import CCUDA
import Synchronization

/// How device memory that other processes will map is allocated and shared.
public enum CUDAMemorySharing: String, Sendable, CaseIterable {
    /// `cuMemCreate` (the virtual-memory API) mapped at a reserved range, shared as a POSIX file
    /// descriptor handed over by the owner's ``DescriptorExchange``.
    case fileDescriptor = "fd"
    /// `cuMemAlloc`, shared as a CUDA IPC handle (`cuIpcGetMemHandle` / `cuIpcOpenMemHandle`).
    case ipc

    /// What weight buffers use on `device`: `COLOCATE_CUDA_SHARING` (`fd` or `ipc`) when set, else
    /// `fileDescriptor` where the device supports it.
    ///
    /// Why not IPC everywhere: on an H200, a copy through the IPC mapping of a 9.6 GiB `cuMemAlloc`
    /// allocation runs at 1.6–1.7 TB/s, against 2.1 TB/s between allocations of one process and through
    /// the IPC mapping of a 4 GiB one; a `cuMemCreate` allocation mapped from its file descriptor runs
    /// at 2.1 TB/s at every size (`bench/probes/ipc_mapping_bandwidth.cu`).
    public static func preferred(for device: CUDADevice) throws(ComputeError) -> CUDAMemorySharing {
        try preferred(setting: getenv("COLOCATE_CUDA_SHARING").map { String(cString: $0) },
                      fileDescriptorsSupported: device.properties.supportsFileDescriptorSharing)
    }

    /// The choice from the `COLOCATE_CUDA_SHARING` value (nil or empty: unset) and what the device supports.
    /// Asking for `fd` on a device without it is an error, not a silent fallback.
    public static func preferred(setting: String?, fileDescriptorsSupported: Bool) throws(ComputeError) -> CUDAMemorySharing {
        guard let setting, !setting.isEmpty else { return fileDescriptorsSupported ? .fileDescriptor : .ipc }
        guard let sharing = CUDAMemorySharing(rawValue: setting) else {
            throw ComputeError("COLOCATE_CUDA_SHARING must be fd or ipc, not '\(setting)'")
        }
        guard sharing == .ipc || fileDescriptorsSupported else {
            throw ComputeError("COLOCATE_CUDA_SHARING=fd, but this GPU or driver cannot share memory as file descriptors; use ipc")
        }
        return sharing
    }
}

/// A physical allocation of one device (`cuMemCreate`, requested shareable as a POSIX file
/// descriptor) mapped read-write at an address range reserved for it. The descriptor is exported and
/// lent to the process's ``DescriptorExchange`` on the first ``reference()``; unmapped, withdrawn and
/// released with the object.
final class CUDAShareableAllocation: @unchecked Sendable {
    let device: CUDADevice
    let address: CUdeviceptr
    /// Mapped bytes: the request rounded up to the allocation granularity.
    let size: Int
    /// The physical allocation mapped at `address`; nil while released (``releasePhysical()``).
    private let physical: Mutex<CUmemGenericAllocationHandle?>
    private let lent = Mutex<DescriptorReference?>(nil)

    init(device: CUDADevice, byteCount: Int) throws(CUDAError) {
        self.device = device
        let driver = device.driver
        var prop = device.shareableAllocationProperties
        let size = try Self.mappedSize(of: byteCount, on: device)
        var handle: CUmemGenericAllocationHandle = 0
        var address: CUdeviceptr = 0
        try device.withContext { () throws(CUDAError) in
            try CUDAError.check(driver.cuMemCreate(&handle, size, &prop, 0), "cuMemCreate")
            do throws(CUDAError) {
                address = try device.map(handle, size: size)
            } catch {
                _ = driver.cuMemRelease(handle)
                throw error
            }
        }
        (self.size, self.address) = (size, address)
        physical = Mutex(handle)
    }

    /// The bytes an allocation of `byteCount` takes: rounded up to the recommended granularity.
    static func mappedSize(of byteCount: Int, on device: CUDADevice) throws(CUDAError) -> Int {
        var prop = device.shareableAllocationProperties
        var granularity = 0
        try device.withContext { () throws(CUDAError) in
            try CUDAError.check(device.driver.cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED),
                                "cuMemGetAllocationGranularity")
        }
        return (max(byteCount, 1) + granularity - 1) / granularity * granularity
    }

    deinit {
        if let reference = lent.withLock({ $0 }), let exchange = try? DescriptorExchange.shared() { exchange.withdraw(reference) }
        let (device, handle, address, size) = (device, physical.withLock { $0 }, address, size)
        device.withContext {
            if handle != nil {
                device.unmap(address, size: size)
            } else {
                _ = device.driver.cuMemAddressFree(address, size)
            }
            if let handle { _ = device.driver.cuMemRelease(handle) }
        }
    }

    /// Where another process fetches this allocation's file descriptor (exported once, then lent).
    func reference() throws -> DescriptorReference {
        guard let handle = physical.withLock({ $0 }) else {
            throw ComputeError("this device memory is released (asleep); wake it before sharing it")
        }
        return try lent.withLock { lent in
            if let known = lent { return known }
            var fd: Int32 = -1
            try device.withContext { () throws(CUDAError) in
                try CUDAError.check(device.driver.cuMemExportToShareableHandle(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
                                    "cuMemExportToShareableHandle")
            }
            let exported = UniqueFileDescriptor(adopting: fd)  // closed if the exchange cannot take it
            _ = fcntl(exported.rawValue, F_SETFD, FD_CLOEXEC)  // never inherited by a process this one spawns
            let made = try DescriptorExchange.shared().lend(exported)
            lent = made
            return made
        }
    }
}

extension CUDAShareableAllocation {
    /// Whether physical memory is mapped at ``address`` now.
    var isBacked: Bool { physical.withLock { $0 != nil } }

    /// Unmaps and releases the physical memory while keeping the address range reserved (an engine's
    /// sleep). The descriptor lent for it is withdrawn: a process that mapped it keeps the old memory
    /// alive until it unmaps, and must fetch the new one after ``restorePhysical()``.
    func releasePhysical() {
        physical.withLock { physical in
            guard let handle = physical else { return }
            if let reference = lent.withLock({ $0 }), let exchange = try? DescriptorExchange.shared() { exchange.withdraw(reference) }
            lent.withLock { $0 = nil }
            let (device, address, size) = (device, address, size)
            device.withContext {
                _ = device.driver.cuMemUnmap(address, size)
                _ = device.driver.cuMemRelease(handle)
            }
            physical = nil
        }
    }

    /// Maps new physical memory (contents undefined) at the same addresses, so pointers into the range
    /// (and CUDA graphs that captured them) stay valid.
    func restorePhysical() throws(CUDAError) {
        try physical.withLock { (physical: inout CUmemGenericAllocationHandle?) throws(CUDAError) in
            guard physical == nil else { return }
            let (device, address, size) = (device, address, size)
            let driver = device.driver
            var prop = device.shareableAllocationProperties
            var handle: CUmemGenericAllocationHandle = 0
            try device.withContext { () throws(CUDAError) in
                try CUDAError.check(driver.cuMemCreate(&handle, size, &prop, 0), "cuMemCreate")
                do throws(CUDAError) {
                    try CUDAError.check(driver.cuMemMap(address, size, 0, handle, 0), "cuMemMap")
                    var access = CUmemAccessDesc(location: CUmemLocation(type: CU_MEM_LOCATION_TYPE_DEVICE, id: device.handle),
                                                 flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
                    do throws(CUDAError) {
                        try CUDAError.check(driver.cuMemSetAccess(address, size, &access, 1), "cuMemSetAccess")
                    } catch {
                        _ = driver.cuMemUnmap(address, size)
                        throw error
                    }
                } catch {
                    _ = driver.cuMemRelease(handle)
                    throw error
                }
            }
            physical = handle
        }
    }
}

extension CUDADevice {
    /// Pinned device memory on this device, shareable as a POSIX file descriptor.
    var shareableAllocationProperties: CUmemAllocationProp {
        var prop = CUmemAllocationProp()
        prop.type = CU_MEM_ALLOCATION_TYPE_PINNED
        prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
        prop.location = CUmemLocation(type: CU_MEM_LOCATION_TYPE_DEVICE, id: handle)
        return prop
    }

    /// Reserves `size` bytes of address space, maps the physical allocation `allocation` there and
    /// makes it readable and writable by this device. The mapping keeps the physical memory alive.
    /// Call with the context current.
    func map(_ allocation: CUmemGenericAllocationHandle, size: Int) throws(CUDAError) -> CUdeviceptr {
        var address: CUdeviceptr = 0
        try CUDAError.check(driver.cuMemAddressReserve(&address, size, 0, 0, 0), "cuMemAddressReserve")
        do throws(CUDAError) {
            try CUDAError.check(driver.cuMemMap(address, size, 0, allocation, 0), "cuMemMap")
            var access = CUmemAccessDesc(location: CUmemLocation(type: CU_MEM_LOCATION_TYPE_DEVICE, id: handle),
                                         flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
            do throws(CUDAError) {
                try CUDAError.check(driver.cuMemSetAccess(address, size, &access, 1), "cuMemSetAccess")
            } catch {
                _ = driver.cuMemUnmap(address, size)
                throw error
            }
        } catch {
            _ = driver.cuMemAddressFree(address, size)
            throw error
        }
        return address
    }

    /// Undoes ``map(_:size:)``. Call with the context current.
    func unmap(_ address: CUdeviceptr, size: Int) {
        _ = driver.cuMemUnmap(address, size)
        _ = driver.cuMemAddressFree(address, size)
    }

    /// Maps another process's allocation from its file descriptor (which stays the caller's).
    func mapShared(fileDescriptor fd: Int32, size: Int) throws(CUDAError) -> CUdeviceptr {
        try withContext { () throws(CUDAError) -> CUdeviceptr in
            var allocation: CUmemGenericAllocationHandle = 0
            let shareable = UnsafeMutableRawPointer(bitPattern: Int(fd))
            try CUDAError.check(driver.cuMemImportFromShareableHandle(&allocation, shareable, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
                                "cuMemImportFromShareableHandle")
            // The mapping holds the physical memory from here on; the handle is not needed.
            defer { _ = driver.cuMemRelease(allocation) }
            return try map(allocation, size: size)
        }
    }
}

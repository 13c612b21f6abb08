#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CCUDA
import Synchronization

// Sharing device memory between processes on one GPU, two ways. A `cuMemAlloc` allocation becomes 64
// bytes (`cuIpcGetMemHandle`) that a peer maps with `cuIpcOpenMemHandle`. A shareable `cuMemCreate`
// allocation becomes a reference to its file descriptor, which the peer fetches from the owner's
// descriptor exchange and maps with `cuMemImportFromShareableHandle` + `cuMemMap`. Either way each
// exported allocation is mapped once per process and device, kept while any buffer uses the mapping,
// and closed with the last of them.

/// A mapping of another process's allocation; closed when the last buffer using it goes.
final class IPCMapping: @unchecked Sendable {
    let device: CUDADevice
    let base: CUdeviceptr
    let size: Int
    let key: [UInt8]
    /// How the mapping was made, so how it is undone.
    let kind: MemoryHandle.Kind

    init(device: CUDADevice, base: CUdeviceptr, size: Int, key: [UInt8], kind: MemoryHandle.Kind) {
        self.device = device
        self.base = base
        self.size = size
        self.key = key
        self.kind = kind
    }

    deinit {
        let (device, base, size, key, kind) = (device, base, size, key, kind)
        // Under the cache's lock, so a concurrent open of the same handle waits for the close.
        device.ipcMappings.withLock { mappings in
            if mappings[key]?.mapping == nil { mappings[key] = nil }
            device.withContext {
                if kind == .cudaFileDescriptor {
                    device.unmap(base, size: size)
                } else {
                    _ = device.driver.cuIpcCloseMemHandle(base)
                }
            }
        }
    }
}

struct WeakIPCMapping {
    weak var mapping: IPCMapping?
}

struct WeakBuffer {
    weak var buffer: CUDABuffer?
}

/// Allocations this process exported, so that it can open its own handles (the driver refuses that).
private let exportedAllocations = Mutex<[[UInt8]: WeakBuffer]>([:])

extension CUDABuffer {
    /// The allocation this buffer is part of, and where in it the buffer starts.
    private var allocationRoot: (buffer: CUDABuffer, offset: Int)? {
        switch owner {
        case .allocation, .shareable: return (self, 0)
        case .mapping: return nil
        case .view(let parent), .pooled(_, block: let parent):
            guard let root = parent.allocationRoot else { return nil }
            return (root.buffer, root.offset + Int(deviceAddress - parent.deviceAddress))
        }
    }

    /// A handle another process on this GPU can open, for `byteCount` bytes at `offset` of this buffer.
    /// Only memory this process allocated can be exported (not a mapping of another's).
    public func exportHandle(offset: Int = 0, byteCount count: Int? = nil) throws -> MemoryHandle {
        let count = count ?? (byteCount - offset)
        guard MemoryHandle.range(offset: offset, byteCount: count, fitsIn: byteCount) else {
            throw ComputeError("cannot export \(count) bytes at \(offset) of a buffer of \(byteCount) bytes")
        }
        guard let root = allocationRoot else {
            throw ComputeError("cannot export memory mapped from another process; export it from its owner")
        }
        let kind: MemoryHandle.Kind
        let opaque: [UInt8]
        if case .shareable(let allocation, _) = root.buffer.owner {
            var out = OpaqueBytesWriter()
            out.put(UInt64(allocation.size))
            kind = .cudaFileDescriptor
            opaque = try allocation.reference().bytes + out.bytes
        } else {
            var handle = CUipcMemHandle()
            let driver = cudaDevice.driver
            let address = root.buffer.deviceAddress
            try cudaDevice.withContext { () throws(CUDAError) in
                try CUDAError.check(driver.cuIpcGetMemHandle(&handle, address), "cuIpcGetMemHandle")
            }
            kind = .cudaIPC
            opaque = withUnsafeBytes(of: handle.reserved) { Array($0) }
        }
        exportedAllocations.withLock { $0[opaque] = WeakBuffer(buffer: root.buffer) }
        return MemoryHandle(deviceUUID: cudaDevice.uuid, kind: kind, byteCount: count, offset: root.offset + offset,
                            opaque: opaque, ownerPID: getpid())
    }
}

/// The opaque bytes of a `.cudaFileDescriptor` handle: a ``DescriptorReference`` and the allocation's
/// mapped size.
private let fileDescriptorHandleBytes = DescriptorReference.byteCount + 8

extension CUDADevice {
    /// Opens a handle exported by a process on this same GPU, as a buffer of `handle.byteCount` bytes.
    ///
    /// The handle must name this device's UUID (whatever the ordinals of the two processes), and its
    /// owner must be alive. The allocation is mapped once (`cuIpcOpenMemHandle` with
    /// `CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS`, or `cuMemMap` of the file descriptor fetched from the
    /// owner's ``DescriptorExchange``) and the mapping shared by every buffer opened from it.
    public func open(_ handle: MemoryHandle) throws -> CUDABuffer {
        guard handle.isCUDA else {
            throw ComputeError("a \(handle.kind.rawValue) handle cannot be opened on a CUDA device")
        }
        guard handle.deviceUUID.lowercased() == uuid.lowercased() else {
            throw ComputeError("the memory handle is for \(handle.deviceUUID), not this process's device \(uuid) (cuda:\(ordinal)); "
                + "open it in the process on that GPU")
        }
        let opaqueBytes = handle.kind == .cudaIPC ? MemoryLayout<CUipcMemHandle>.size : fileDescriptorHandleBytes
        guard handle.opaque.count == opaqueBytes else {
            throw ComputeError("a \(handle.kind.rawValue) handle has \(opaqueBytes) opaque bytes, not \(handle.opaque.count)")
        }
        try handle.validate()
        try handle.checkOwnerAlive()

        if handle.ownerPID == getpid() {
            guard let root = exportedAllocations.withLock({ $0[handle.opaque]?.buffer }) else {
                throw ComputeError("the memory handle names an allocation of this process that has been freed")
            }
            try handle.checkRange(within: root.byteCount)
            return root.view(offset: handle.offset, byteCount: handle.byteCount)
        }

        let mapping = try ipcMappings.withLock { (mappings) throws -> IPCMapping in
            if let open = mappings[handle.opaque]?.mapping { return open }
            let opened = try handle.kind == .cudaIPC ? mapIPC(handle) : mapFileDescriptor(handle)
            mappings[handle.opaque] = WeakIPCMapping(mapping: opened)
            return opened
        }
        try handle.checkRange(within: mapping.size)
        return CUDABuffer(device: self, address: mapping.base + UInt64(handle.offset), byteCount: handle.byteCount,
                          owner: .mapping(mapping))
    }

    /// Number of other processes' allocations this process has mapped now.
    public var openIPCMappingCount: Int { ipcMappings.withLock { $0.values.filter { $0.mapping != nil }.count } }

    private func mapIPC(_ handle: MemoryHandle) throws -> IPCMapping {
        var ipc = CUipcMemHandle()
        withUnsafeMutableBytes(of: &ipc.reserved) { $0.copyBytes(from: handle.opaque) }
        do {
            let (base, size) = try withContext { () throws(CUDAError) -> (CUdeviceptr, Int) in
                var pointer: CUdeviceptr = 0
                try CUDAError.check(driver.cuIpcOpenMemHandle(&pointer, ipc, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS), "cuIpcOpenMemHandle_v2")
                var base: CUdeviceptr = 0
                var size = 0
                // The allocation's size bounds every range opened from it; without it no range can be
                // checked, so the handle is refused rather than trusted.
                guard driver.cuMemGetAddressRange(&base, &size, pointer) == CUDA_SUCCESS, base == pointer, size > 0 else {
                    _ = driver.cuIpcCloseMemHandle(pointer)
                    throw CUDAError(library: .driver, code: 1 /* CUDA_ERROR_INVALID_VALUE */, api: "cuMemGetAddressRange",
                                    message: "the size of the opened allocation is unknown, so its range cannot be checked")
                }
                return (pointer, size)
            }
            return IPCMapping(device: self, base: base, size: size, key: handle.opaque, kind: .cudaIPC)
        } catch {
            let hint = handle.ownerIsAlive
                ? "the exporter may have freed the buffer, or the handle is not from this machine"
                : "process \(handle.ownerPID) has exited"
            throw ComputeError("cannot open the CUDA memory handle of process \(handle.ownerPID) on \(uuid): \(error) (\(hint))")
        }
    }

    private func mapFileDescriptor(_ handle: MemoryHandle) throws -> IPCMapping {
        let (reference, size) = try handle.fileDescriptorReference()
        let fd = try DescriptorExchange.fetch(reference)  // closed when this returns
        do {
            let base = try mapShared(fileDescriptor: fd.rawValue, size: size)
            return IPCMapping(device: self, base: base, size: size, key: handle.opaque, kind: .cudaFileDescriptor)
        } catch {
            throw ComputeError("cannot map the shared CUDA memory of process \(handle.ownerPID) on \(uuid): \(error)")
        }
    }
}

extension MemoryHandle {
    /// The ``DescriptorReference`` and allocation size in a `.cudaFileDescriptor` handle's opaque
    /// bytes, checked: the reference names the handle's owner, and the size is positive and fits in
    /// an `Int` (it comes from another process, maybe not one of ours).
    func fileDescriptorReference() throws(ComputeError) -> (reference: DescriptorReference, size: Int) {
        guard opaque.count == fileDescriptorHandleBytes else {
            throw ComputeError("a \(kind.rawValue) handle has \(fileDescriptorHandleBytes) opaque bytes, not \(opaque.count)")
        }
        let reference = try DescriptorReference(bytes: opaque)
        var sizeField = OpaqueBytesReader(Array(opaque[DescriptorReference.byteCount...]))
        let rawSize = sizeField.get(UInt64.self)
        guard reference.pid == ownerPID, let size = Int(exactly: rawSize), size > 0 else {
            throw ComputeError("malformed CUDA file-descriptor handle (pid \(reference.pid) in a handle of \(ownerPID), size \(rawSize))")
        }
        return (reference, size)
    }
}

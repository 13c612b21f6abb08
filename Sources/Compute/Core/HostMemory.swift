#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owner of a range of host memory that tensors view. The memory is released when the last tensor
/// (or other holder) lets go of its `HostMemory`.
///
/// Kinds of backing: a private aligned allocation, a shared-memory object (exportable to other
/// processes of the same user by file descriptor), or a mapping of a file (safetensors, zero copy).
public final class HostMemory: @unchecked Sendable {
    /// Base address; 64-byte aligned for allocations, page aligned for mappings.
    public let baseAddress: UnsafeMutableRawPointer
    public let byteCount: Int
    /// The device whose budget this memory counts against (`Device.host` when none).
    public let device: Device
    /// For shared memory: the descriptor that other processes can map. Owned (closed on release).
    public let sharedFileDescriptor: Int32?
    private let release: @Sendable (UnsafeMutableRawPointer, Int) -> Void

    public init(
        baseAddress: UnsafeMutableRawPointer, byteCount: Int, device: Device,
        sharedFileDescriptor: Int32? = nil,
        release: @escaping @Sendable (UnsafeMutableRawPointer, Int) -> Void
    ) {
        self.baseAddress = baseAddress
        self.byteCount = byteCount
        self.device = device
        self.sharedFileDescriptor = sharedFileDescriptor
        self.release = release
    }

    deinit {
        release(baseAddress, byteCount)
        if let fd = sharedFileDescriptor { close(fd) }
    }

    /// A zero-filled private allocation, 64-byte aligned. Large ones are anonymous mappings, whose
    /// pages the kernel zeroes on first touch: a KV cache sized to a budget costs nothing until used.
    public static func allocate(byteCount: Int, device: Device = .host) throws(ComputeError) -> HostMemory {
        let size = max(byteCount, 1)
        if size >= 1 << 20 {
            guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
                throw ComputeError("out of host memory allocating \(byteCount) bytes: \(String(cString: strerror(errno)))")
            }
            return HostMemory(baseAddress: p, byteCount: byteCount, device: device) { p, n in munmap(p, max(n, 1)) }
        }
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, size) == 0, let raw else {
            throw ComputeError("out of host memory allocating \(byteCount) bytes")
        }
        memset(raw, 0, size)
        return HostMemory(baseAddress: raw, byteCount: byteCount, device: device) { p, _ in free(p) }
    }

    /// A zero-filled shared-memory object (memfd, mode 0600 by construction: only this user can open it,
    /// and only by receiving the descriptor). The descriptor is kept so it can be passed to peers.
    public static func allocateShared(byteCount: Int, device: Device, name: String = "colocate") throws(ComputeError) -> HostMemory {
        let fd = cshimMemfd(name)
        guard fd >= 0 else { throw ComputeError("memfd_create failed: \(String(cString: strerror(errno)))") }
        _ = fchmod(fd, 0o600)
        guard ftruncate(fd, off_t(max(byteCount, 1))) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw ComputeError("cannot size shared memory of \(byteCount) bytes: \(message)")
        }
        do {
            return try map(fileDescriptor: fd, byteCount: byteCount, device: device, keepDescriptor: true)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Maps `byteCount` bytes of a shared-memory descriptor read-write (shared). With `keepDescriptor`
    /// the new owner closes `fd` on release; otherwise the caller still owns it.
    public static func map(fileDescriptor fd: Int32, byteCount: Int, device: Device, keepDescriptor: Bool) throws(ComputeError) -> HostMemory {
        let size = max(byteCount, 1)
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw ComputeError("cannot map shared memory of \(byteCount) bytes: \(String(cString: strerror(errno)))")
        }
        return HostMemory(baseAddress: p, byteCount: byteCount, device: device,
                          sharedFileDescriptor: keepDescriptor ? fd : nil) { p, n in munmap(p, max(n, 1)) }
    }
}

import CShims
private func cshimMemfd(_ name: String) -> Int32 { name.withCString { cshim_memfd_create($0) } }

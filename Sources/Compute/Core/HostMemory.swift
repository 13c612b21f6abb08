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
        let made = cshimMemfd(name)
        guard made >= 0 else { throw ComputeError(.systemCall, "memfd_create failed: \(String(cString: strerror(errno)))") }
        let fd = UniqueFileDescriptor(adopting: made)  // closed on every error path below
        _ = fchmod(fd.rawValue, 0o600)
        guard ftruncate(fd.rawValue, off_t(max(byteCount, 1))) == 0 else {
            throw ComputeError(.systemCall, "cannot size shared memory of \(byteCount) bytes: \(String(cString: strerror(errno)))")
        }
        return try map(owning: fd, byteCount: byteCount, device: device)
    }

    /// Maps `byteCount` bytes of a shared-memory descriptor read-write (shared); the new `HostMemory`
    /// owns the descriptor (it can pass it to peers) and closes it on release. When mapping fails the
    /// descriptor is closed here.
    public static func map(owning fd: consuming UniqueFileDescriptor, byteCount: Int, device: Device) throws(ComputeError) -> HostMemory {
        let base = try mapShared(fd.rawValue, byteCount: byteCount)
        return HostMemory(baseAddress: base, byteCount: byteCount, device: device,
                          sharedFileDescriptor: fd.take()) { p, n in munmap(p, max(n, 1)) }
    }

    private static func mapShared(_ fd: Int32, byteCount: Int) throws(ComputeError) -> UnsafeMutableRawPointer {
        guard let p = mmap(nil, max(byteCount, 1), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw ComputeError(.systemCall, "cannot map shared memory of \(byteCount) bytes: \(String(cString: strerror(errno)))")
        }
        return p
    }

    /// Maps `byteCount` bytes of a shared-memory descriptor read-write (shared). With `keepDescriptor`
    /// the new owner closes `fd` on release; otherwise the caller still owns it.
    ///
    /// Prefer ``map(owning:byteCount:device:)`` for a descriptor that should be closed with the mapping.
    public static func map(fileDescriptor fd: Int32, byteCount: Int, device: Device, keepDescriptor: Bool) throws(ComputeError) -> HostMemory {
        let p = try mapShared(fd, byteCount: byteCount)
        return HostMemory(baseAddress: p, byteCount: byteCount, device: device,
                          sharedFileDescriptor: keepDescriptor ? fd : nil) { p, n in munmap(p, max(n, 1)) }
    }
}

import CShims
private func cshimMemfd(_ name: String) -> Int32 { name.withCString { cshim_memfd_create($0) } }

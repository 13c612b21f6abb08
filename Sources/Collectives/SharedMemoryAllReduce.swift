import CShims
import Compute
#if canImport(Glibc)
import Glibc
#endif

/// Tensor-parallel all-reduce between the ranks of one engine on virtual CPU devices, through one
/// shared-memory segment: each rank writes its partial sum into its own slot, waits at a barrier, then
/// adds all slots **in rank order** — so every rank ends with the bitwise same result — and waits again
/// before the slots are reused. Barriers spin briefly, then sleep on a shared futex.
///
/// A rank whose peer died or failed would wait forever; instead the wait wakes periodically, checks
/// every peer's pid and the segment's abort flag (set by a rank whose step threw), and throws naming
/// the rank at fault. An aborted segment stays aborted: the engine has to be restarted.
public final class SharedMemoryAllReduce: @unchecked Sendable {
    /// Segment layout: header (arrivals u32, generation u32, pids[32] i32, abort u32 = 1 + failed rank),
    /// then per-rank slots.
    static let headerBytes = 256
    public static let maxRanks = 32

    public let rank: Int
    public let worldSize: Int
    /// Floats per rank slot; larger tensors are reduced in chunks.
    public let slotFloats: Int
    private let memory: HostMemory

    /// Segment size for `worldSize` ranks with slots of `slotFloats`.
    public static func segmentBytes(worldSize: Int, slotFloats: Int) -> Int {
        headerBytes + worldSize * slotFloats * 4
    }

    /// Creates the segment (driver side); ranks attach to it with `SharedMemoryIdentity`.
    public static func createSegment(worldSize: Int, slotFloats: Int) throws -> HostMemory {
        precondition(worldSize <= maxRanks)
        return try HostMemory.allocateShared(byteCount: segmentBytes(worldSize: worldSize, slotFloats: slotFloats),
                                             device: .host, name: "colocate-allreduce")
    }

    /// The handle other processes on this host map `segment` with (``SharedMemoryIdentity``).
    public static func handle(of segment: HostMemory) throws -> MemoryHandle {
        guard let descriptor = segment.sharedFileDescriptor else {
            throw ComputeError("the all-reduce segment is not shared memory")
        }
        let identity = try SharedMemoryIdentity.of(fileDescriptor: descriptor)
        return MemoryHandle(deviceUUID: Device.host.uuid, kind: .cpuSharedMemory, byteCount: segment.byteCount,
                            offset: 0, opaque: identity.bytes, ownerPID: identity.pid)
    }

    public init(segment: HostMemory, rank: Int, worldSize: Int, slotFloats: Int) {
        precondition(segment.byteCount >= Self.segmentBytes(worldSize: worldSize, slotFloats: slotFloats))
        memory = segment
        self.rank = rank
        self.worldSize = worldSize
        self.slotFloats = slotFloats
        pids[rank] = getpid()
    }

    private var arrivals: UnsafeMutablePointer<UInt32> { memory.baseAddress.assumingMemoryBound(to: UInt32.self) }
    private var generation: UnsafeMutablePointer<UInt32> { arrivals + 1 }
    private var pids: UnsafeMutablePointer<Int32> { (memory.baseAddress + 8).assumingMemoryBound(to: Int32.self) }
    private var abortFlag: UnsafeMutablePointer<UInt32> { (memory.baseAddress + 8 + 4 * Self.maxRanks).assumingMemoryBound(to: UInt32.self) }

    /// Marks the group failed (this rank's step threw) and wakes every waiting peer, which then throws
    /// instead of waiting for this rank forever.
    public func abort() {
        // The first rank to fail is the one named; peers failing because of it change nothing.
        _ = cshim_atomic_cas_u32(abortFlag, 0, UInt32(rank + 1))
        _ = cshim_atomic_fetch_add_u32(generation, 0)
        _ = cshim_futex_wake_all(generation)
    }

    /// Marks the group of `segment` failed because of rank `failedRank`, from outside the ranks (the driver
    /// that made the segment), and wakes every waiting rank, which then throws. For a rank that failed
    /// alone while its peers wait in a barrier.
    public static func abort(segment: HostMemory, failedRank: Int) {
        let base = segment.baseAddress
        let generation = (base + 4).assumingMemoryBound(to: UInt32.self)
        let flag = (base + 8 + 4 * maxRanks).assumingMemoryBound(to: UInt32.self)
        _ = cshim_atomic_cas_u32(flag, 0, UInt32(failedRank + 1))
        _ = cshim_atomic_fetch_add_u32(generation, 0)
        _ = cshim_futex_wake_all(generation)
    }

    /// Ranks of `segment`'s group that arrived at the current barrier and wait there for the others:
    /// a test waits on this (the event) before acting on a waiting rank, instead of sleeping a guess.
    static func ranksWaiting(in segment: HostMemory) -> Int {
        Int(cshim_atomic_load_u32(segment.baseAddress.assumingMemoryBound(to: UInt32.self)))
    }

    private func slot(_ r: Int) -> UnsafeMutablePointer<Float> {
        (memory.baseAddress + Self.headerBytes).assumingMemoryBound(to: Float.self) + r * slotFloats
    }

    /// Sums `tensor` (f32, contiguous, host) across ranks, in place.
    public func callAsFunction(_ tensor: Tensor) throws {
        precondition(tensor.dtype == .f32 && tensor.isContiguous)
        let data = tensor.pointer(Float.self)
        try checkPeers()
        var start = 0
        while start < tensor.count {
            let n = min(slotFloats, tensor.count - start)
            slot(rank).update(from: data + start, count: n)
            try barrier()
            let out = data + start
            out.update(from: slot(0), count: n)
            for r in 1..<worldSize { add(slot(r), into: out, count: n) }
            try barrier()
            start += n
        }
    }

    private func add(_ src: UnsafeMutablePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i + 8 <= count {
            let a = UnsafeRawPointer(dst + i).loadUnaligned(as: SIMD8<Float>.self)
            let b = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: a + b, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count { dst[i] += src[i]; i += 1 }
    }

    /// Sense-free generation barrier: the last to arrive resets the count and bumps the generation.
    private func barrier() throws {
        let gen = cshim_atomic_load_u32(generation)
        if cshim_atomic_fetch_add_u32(arrivals, 1) == UInt32(worldSize - 1) {
            cshim_atomic_store_u32(arrivals, 0)
            _ = cshim_atomic_fetch_add_u32(generation, 1)
            _ = cshim_futex_wake_all(generation)
            return
        }
        var spins = 0
        while cshim_atomic_load_u32(generation) == gen {
            if spins < 4000 {
                cshim_cpu_relax()
                spins += 1
                continue
            }
            _ = cshim_futex_wait(generation, gen, 50_000_000)
            if cshim_atomic_load_u32(generation) != gen { break }
            try checkPeers()
        }
    }

    private func checkPeers() throws {
        let aborted = cshim_atomic_load_u32(abortFlag)
        if aborted != 0 {
            throw ComputeError("tensor-parallel rank \(aborted - 1) failed during a step; this engine must be restarted")
        }
        for r in 0..<worldSize where r != rank {
            let pid = pids[r]
            if pid > 0 && kill(pid, 0) != 0 && errno == ESRCH {
                throw ComputeError("tensor-parallel rank \(r) (pid \(pid)) died during an all-reduce")
            }
        }
    }
}

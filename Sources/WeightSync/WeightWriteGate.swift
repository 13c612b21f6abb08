#if canImport(Glibc)
import Glibc
#endif
import CShims
import Compute

/// Keeps a push out of an engine rank's generation, and a generation out of a push.
///
/// Why: with push sync a trainer writes into the engine rank's weights without the engine taking part,
/// so nothing in the engine's own call order (its mailbox) separates the two. The gate is a small
/// shared-memory word per engine rank: the rank holds it while it generates, the trainer while it
/// writes; the other side waits (bounded) and then fails with the reason. A holder that died is
/// noticed by its pid and the gate taken over, so a dead worker never blocks the other side.
///
/// Guarantees per rank: a push never lands inside a generation call, and a generation never starts
/// inside a push. Across the ranks of a tensor-parallel engine, a generation sent while the trainers'
/// pushes are still finishing can meet some ranks updated and some not: sync all trainers, then
/// generate (the order every RL loop keeps anyway).
public final class WeightWriteGate: @unchecked Sendable {
    public enum Holder: UInt32, Sendable {
        case generation = 1
        case push = 2
    }

    /// Word 0: 0 free, else the holder; word 1: the holder's pid; word 2: pushes completed; word 3: the
    /// epoch of the rank's weight memory (raised when a wake maps new memory under the same addresses).
    private let memory: HostMemory
    private var state: UnsafeMutablePointer<UInt32> { memory.baseAddress.assumingMemoryBound(to: UInt32.self) }
    private var holderPID: UnsafeMutablePointer<UInt32> { state + 1 }
    private static let byteCount = 64

    /// A new, free gate in shared memory (the engine rank's side).
    public init() throws {
        memory = try HostMemory.allocateShared(byteCount: Self.byteCount, device: .host, name: "colocate-weight-gate")
    }

    /// The gate another process made, opened from its handle (the trainer's side).
    public init(opening handle: MemoryHandle) throws {
        guard handle.kind == .cpuSharedMemory, handle.byteCount >= Self.byteCount else {
            throw WeightSyncError("a weight gate is \(Self.byteCount) bytes of shared memory, not \(handle)")
        }
        try handle.checkOwnerAlive()
        let fd = try SharedMemoryIdentity(bytes: handle.opaque).open()
        memory = try HostMemory.map(fileDescriptor: fd, byteCount: Self.byteCount, device: .host, keepDescriptor: true)
    }

    /// What a trainer needs to open the gate.
    public func handle() throws -> MemoryHandle {
        let identity = try SharedMemoryIdentity.of(fileDescriptor: memory.sharedFileDescriptor!)
        return MemoryHandle(deviceUUID: Device.host.uuid, kind: .cpuSharedMemory, byteCount: Self.byteCount, offset: 0,
                            opaque: identity.bytes, ownerPID: getpid())
    }

    /// Who holds the gate now (nil: free).
    public var holder: Holder? { Holder(rawValue: cshim_atomic_load_u32(state)) }

    /// Takes the gate for `holder`, waiting up to `timeout` for the other side to let go. Throws a
    /// ``WeightSyncError`` naming who held it when the wait runs out.
    public func acquire(_ holder: Holder, timeout: Duration, what: @autoclosure () -> String) throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            if cshim_atomic_cas_u32(state, 0, holder.rawValue) == 1 {
                cshim_atomic_store_u32(holderPID, UInt32(bitPattern: getpid()))
                return
            }
            let seen = cshim_atomic_load_u32(state)
            if seen == 0 { continue }
            // The pid is written just after the state: 0 means "being taken", not "dead".
            let pid = Int32(bitPattern: cshim_atomic_load_u32(holderPID))
            if pid > 0, kill(pid, 0) != 0, errno == ESRCH {
                _ = cshim_atomic_cas_u32(state, seen, 0)  // its holder died holding it
                continue
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                let other = Holder(rawValue: seen) == .generation ? "generating" : "being written by a trainer (pid \(pid))"
                throw WeightSyncError("\(what()): the engine rank is \(other) and did not let go within \(timeout)")
            }
            // Wake on release, or look again soon (a holder's death wakes nobody).
            _ = cshim_futex_wait(state, seen, Int64(min(left, .milliseconds(50)).inSeconds * 1e9))
        }
    }

    /// Lets go of the gate and wakes whoever waits for it.
    public func release() {
        cshim_atomic_store_u32(holderPID, 0)
        cshim_atomic_store_u32(state, 0)
        _ = cshim_futex_wake_all(state)
    }

    /// Pushes that wrote every weight of the rank, ever (wraps). The engine compares it across a sleep.
    public var completedWrites: UInt32 { cshim_atomic_load_u32(state + 2) }

    /// Counts a push that wrote every weight; called by the pusher while it holds the gate.
    public func noteWriteCompleted() { _ = cshim_atomic_fetch_add_u32(state + 2, 1) }

    /// The epoch of the rank's weight memory. A pusher attached under another epoch would write into
    /// memory the rank no longer maps, so its push is refused.
    public var memoryEpoch: UInt32 { cshim_atomic_load_u32(state + 3) }

    /// Called by the rank when its weights' memory was replaced (a level-2 wake on a GPU).
    public func advanceMemoryEpoch() { _ = cshim_atomic_fetch_add_u32(state + 3, 1) }

    /// Runs `body` holding the gate.
    public func holding<T>(_ holder: Holder, timeout: Duration, what: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
        try acquire(holder, timeout: timeout, what: what())
        defer { release() }
        return try body()
    }
}

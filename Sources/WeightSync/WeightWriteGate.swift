#if canImport(Glibc)
import Glibc
#endif
import CShims
import Compute

/// Keeps a weight write out of an engine rank's generation, and a generation out of a write; and
/// remembers whether the rank's weights are whole.
///
/// Why: with push sync a trainer writes into the engine rank's weights without the engine taking part,
/// so nothing in the engine's own call order (its mailbox) separates the two. The gate is a small
/// shared-memory word per engine rank: the rank holds it while it generates, a writer (a trainer's
/// push, or the rank's own pull update) while it writes; the other side waits (bounded) and then fails
/// with the reason. The word holds the holder's kind and pid together, set by one compare-and-swap,
/// so a holder that died is always noticed by its pid and the gate taken over: a dead worker never
/// blocks the other side.
///
/// A writer marks the weights incomplete before its first byte and complete (with a new version)
/// after its last. A writer that died or failed in between leaves them marked: generation refuses
/// (`requireCompleteWeights`) until a complete sync, rather than sample from half-old, half-new weights.
///
/// Guarantees per rank: a write never lands inside a generation call, and a generation never starts
/// inside a write or on incomplete weights. Across the ranks of a tensor-parallel engine, a generation
/// sent while the trainers' pushes are still finishing can meet some ranks updated and some not: sync
/// all trainers, then generate (the order every RL loop keeps anyway); `version` tells them apart.
public final class WeightWriteGate: @unchecked Sendable {
    public enum Holder: UInt32, Sendable {
        case generation = 1
        /// A weight write: a trainer's push, or the rank's own pull update.
        case push = 2
    }

    // Word 0: 0 when free, else `holder << 24 | pid` (Linux pids are below 2^22).
    // Word 1: 0 when the weights are whole, else the pid of the writer that began and did not finish.
    // Word 2: the version: complete writes so far.
    // Word 3: the epoch of the rank's weight memory (raised when a wake maps new memory at the same addresses).
    private let memory: HostMemory
    private var word: UnsafeMutablePointer<UInt32> { memory.baseAddress.assumingMemoryBound(to: UInt32.self) }
    private var incompleteWriter: UnsafeMutablePointer<UInt32> { word + 1 }
    private var versionWord: UnsafeMutablePointer<UInt32> { word + 2 }
    private static let byteCount = 64
    private static let pidBits: UInt32 = 24

    static func encode(_ holder: Holder, pid: Int32) -> UInt32 { holder.rawValue << pidBits | UInt32(bitPattern: pid) }
    static func decode(_ word: UInt32) -> (holder: Holder?, pid: Int32) {
        (Holder(rawValue: word >> pidBits), Int32(bitPattern: word & (1 << pidBits - 1)))
    }

    /// A new, free gate in shared memory (the engine rank's side); the weights count as whole.
    public init() throws {
        memory = try HostMemory.allocateShared(byteCount: Self.byteCount, device: .host, name: "colocate-weight-gate")
    }

    /// The gate another process made, opened from its handle (the trainer's side).
    public init(opening handle: MemoryHandle) throws {
        guard handle.kind == .cpuSharedMemory, handle.byteCount >= Self.byteCount else {
            throw WeightSyncError("a weight gate is \(Self.byteCount) bytes of shared memory, not \(handle)")
        }
        try handle.checkOwnerAlive()
        memory = try HostMemory.map(owning: try SharedMemoryIdentity(bytes: handle.opaque).open(), byteCount: Self.byteCount, device: .host)
    }

    /// What a trainer needs to open the gate.
    public func handle() throws -> MemoryHandle {
        let identity = try SharedMemoryIdentity.of(fileDescriptor: memory.sharedFileDescriptor!)
        return MemoryHandle(deviceUUID: Device.host.uuid, kind: .cpuSharedMemory, byteCount: Self.byteCount, offset: 0,
                            opaque: identity.bytes, ownerPID: getpid())
    }

    /// Who holds the gate now (nil: free).
    public var holder: Holder? { Self.decode(cshim_atomic_load_u32(word)).holder }

    /// Complete weight writes so far (0: the weights the rank loaded).
    public var version: Int { Int(cshim_atomic_load_u32(versionWord)) }

    /// The pid of a writer that began writing and did not finish, or nil when the weights are whole.
    public var incompleteWriterPID: Int32? {
        let pid = Int32(bitPattern: cshim_atomic_load_u32(incompleteWriter))
        return pid == 0 ? nil : pid
    }

    /// Takes the gate for `holder`, waiting up to `timeout` for the other side to let go. Throws a
    /// ``WeightSyncError`` naming who held it when the wait runs out.
    ///
    /// Blocks the calling thread (a futex wait): call it from a thread of its own, never from a Swift
    /// concurrency pool thread (the engine and trainer run it on their blocking-work threads).
    public func acquire(_ holder: Holder, timeout: Duration, what: @autoclosure () -> String) throws {
        let deadline = ContinuousClock.now + timeout
        let mine = Self.encode(holder, pid: getpid())
        while true {
            if cshim_atomic_cas_u32(word, 0, mine) == 1 { return }
            let seen = cshim_atomic_load_u32(word)
            if seen == 0 { continue }
            let (kind, pid) = Self.decode(seen)
            // Kind and pid are set together: a pid that is not running means its holder died holding it.
            if pid <= 0 || kind == nil || (kill(pid, 0) != 0 && errno == ESRCH) {
                _ = cshim_atomic_cas_u32(word, seen, 0)
                continue
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                let other = kind == .generation ? "generating" : "being written by a trainer (pid \(pid))"
                throw WeightSyncError("\(what()): the engine rank is \(other) and did not let go within \(timeout)")
            }
            // Wake on release, or look again soon (a holder's death wakes nobody).
            _ = cshim_futex_wait(word, seen, Int64(min(left, .milliseconds(50)).inSeconds * 1e9))
        }
    }

    /// Lets go of the gate and wakes whoever waits for it.
    public func release() {
        cshim_atomic_store_u32(word, 0)
        _ = cshim_futex_wake_all(word)
    }

    /// The epoch of the rank's weight memory. A pusher attached under another epoch would write into
    /// memory the rank no longer maps, so its push is refused.
    public var memoryEpoch: UInt32 { cshim_atomic_load_u32(word + 3) }

    /// Called by the rank when its weights' memory was replaced (a level-2 wake on a GPU).
    public func advanceMemoryEpoch() { _ = cshim_atomic_fetch_add_u32(word + 3, 1) }

    /// Runs `body` holding the gate.
    public func holding<T>(_ holder: Holder, timeout: Duration, what: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
        try acquire(holder, timeout: timeout, what: what())
        defer { release() }
        return try body()
    }

    /// Marks the weights incomplete: call holding the gate as `.push`, before the first byte is written.
    public func beginWrite() {
        cshim_atomic_store_u32(incompleteWriter, UInt32(bitPattern: getpid()))
    }

    /// Marks the weights whole again, as a new version: call after the last byte is written.
    public func finishWrite() {
        _ = cshim_atomic_fetch_add_u32(versionWord, 1)
        cshim_atomic_store_u32(incompleteWriter, 0)
    }

    /// Runs `body`, a write of the weights, holding the gate as `.push` and marked incomplete until it
    /// returns. `body` must be all-or-nothing (as an importer's update is: it validates before the first
    /// byte): when it throws, it wrote nothing, and the mark is put back as it was. A process that
    /// dies inside `body` leaves the mark.
    public func writing<T>(timeout: Duration, what: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
        try holding(.push, timeout: timeout, what: what()) {
            let before = cshim_atomic_load_u32(incompleteWriter)
            beginWrite()
            do {
                let result = try body()
                finishWrite()
                return result
            } catch {
                cshim_atomic_store_u32(incompleteWriter, before)
                throw error
            }
        }
    }

    /// Throws when a writer began writing the weights and did not finish (it died, or its copy failed):
    /// generation must wait for a complete sync.
    public func requireCompleteWeights(_ what: @autoclosure () -> String) throws {
        guard let pid = incompleteWriterPID else { return }
        let fate = kill(pid, 0) != 0 && errno == ESRCH ? "died while writing (pid \(pid))" : "did not finish writing (pid \(pid))"
        throw WeightSyncError("\(what()): its weights are incomplete: a weight sync \(fate); sync the weights again first")
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The persistent threads behind `Parallel.forEach`.
///
/// Decode runs on the order of a hundred parallel calls per token, each a few tens to hundreds of
/// microseconds long, so waking a sleeping thread for each (a futex round trip, tens of µs on a VM)
/// would cost a good part of the work. Workers therefore spin for a short while after each job
/// (`COLOCATE_SPIN_US`, default 50 µs: longer than the gaps between the ops of a step, short
/// enough not to take a core from other processes between steps) before they sleep on a condition variable.
///
/// One job at a time. A job is published by bumping the sequence number in `ticket`; a worker joins
/// it by incrementing the joined count in the same word with a compare-exchange, which fails once the
/// caller has closed the job. The caller closes the job after the last index is claimed and then waits
/// only for the workers that joined — a worker that was asleep or descheduled never delays a caller.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool(width: WorkerPool.configuredWidth(), spinMicroseconds: WorkerPool.configuredSpin())

    /// Threads per job, counting the caller.
    let width: Int
    private let spinNanoseconds: Int

    // ticket = sequence << 17 | closed << 16 | joined workers (16 bits).
    private static let closedBit: UInt64 = 1 << 16
    private static let joinedMask: UInt64 = 0xFFFF
    private static let sequenceShift: UInt64 = 17

    private let ticket = Atomic<UInt64>(0)
    /// True while a caller owns the workers.
    private let busy = Atomic<Bool>(false)
    private let nextIndex = Atomic<Int>(0)
    private let finishedWorkers = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    // Written by the owning caller before a job is published, read by workers that joined it.
    private var body: ((Int, Int) -> Void)?
    private var count = 0

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let wakeup: UnsafeMutablePointer<pthread_cond_t>

    init(width: Int, spinMicroseconds: Int) {
        self.width = max(1, min(width, 256))
        self.spinNanoseconds = max(0, spinMicroseconds) * 1000
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        wakeup = .allocate(capacity: 1)
        wakeup.initialize(to: pthread_cond_t())
        pthread_cond_init(wakeup, nil)
        for _ in 1..<self.width { startWorker() }
    }

    private static func configuredWidth() -> Int {
        if let text = getenv("COLOCATE_CPU_THREADS"), let n = Int(String(cString: text)), n > 0 { return n }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    private static func configuredSpin() -> Int {
        if let text = getenv("COLOCATE_SPIN_US"), let n = Int(String(cString: text)), n >= 0 { return n }
        return 50
    }

    /// Runs the job on the caller and the workers, or serially when another caller owns the pool
    /// (including a nested call from inside a body).
    /// `body` gets the index and the lane: 0 for the caller, 1... for the workers in the order they
    /// joined; lanes of concurrent calls are distinct and below `width`.
    func run(count: Int, _ body: (_ index: Int, _ lane: Int) -> Void) {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for i in 0..<count { body(i, 0) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            self.body = escapable
            self.count = count
            nextIndex.store(0, ordering: .relaxed)
            finishedWorkers.store(0, ordering: .relaxed)
            let sequence = (ticket.load(ordering: .relaxed) >> Self.sequenceShift) &+ 1
            // Sequentially consistent with the worker's `sleepers` increment: either it sees the
            // new ticket before sleeping or we see it asleep and wake it.
            ticket.store(sequence << Self.sequenceShift, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(mutex)
                pthread_cond_broadcast(wakeup)
                pthread_mutex_unlock(mutex)
            }
            drain(lane: 0)
            // Close the job: from now on no worker can join; wait for those that did.
            var t = ticket.load(ordering: .relaxed)
            while true {
                let (exchanged, original) = ticket.compareExchange(
                    expected: t, desired: t | Self.closedBit, ordering: .acquiringAndReleasing)
                if exchanged { break }
                t = original
            }
            let joined = Int(t & Self.joinedMask)
            var spins = 0
            while finishedWorkers.load(ordering: .acquiring) < joined {
                spins += 1
                if spins & 1023 == 0 { sched_yield() }
            }
            self.body = nil
        }
        busy.store(false, ordering: .releasing)
    }

    /// Claims and runs indices until none are left. Not inlined so that the copy of `body` it holds
    /// is released before the caller signals completion.
    @inline(never)
    private func drain(lane: Int) {
        guard let body else { return }
        let count = self.count
        while true {
            let i = nextIndex.wrappingAdd(1, ordering: .relaxed).oldValue
            if i >= count { return }
            body(i, lane)
        }
    }

    private func startWorker() {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { argument in
            let pool = Unmanaged<WorkerPool>.fromOpaque(argument!).takeRetainedValue()
            pool.workerLoop()
        }, context)
        precondition(rc == 0, "cannot start a compute worker thread (pthread_create: \(rc))")
        pthread_detach(thread)
    }

    private func workerLoop() -> Never {
        var seen: UInt64 = 0
        while true {
            var t = waitForJob(after: seen)
            seen = t >> Self.sequenceShift
            // Join unless the job is already closed (or superseded, which the next round handles).
            var lane = 0
            while t >> Self.sequenceShift == seen && t & Self.closedBit == 0 {
                let (exchanged, original) = ticket.compareExchange(
                    expected: t, desired: t &+ 1, ordering: .acquiringAndReleasing)
                if exchanged {
                    lane = Int(t & Self.joinedMask) + 1
                    break
                }
                t = original
            }
            if lane > 0 {
                drain(lane: lane)
                finishedWorkers.wrappingAdd(1, ordering: .releasing)
            }
        }
    }

    /// Spins, then sleeps, until a job newer than sequence `seen` is published; returns its ticket.
    private func waitForJob(after seen: UInt64) -> UInt64 {
        var t = ticket.load(ordering: .acquiring)
        if t >> Self.sequenceShift != seen { return t }
        let start = Self.nanoseconds()
        var spins = 0
        while true {
            t = ticket.load(ordering: .acquiring)
            if t >> Self.sequenceShift != seen { return t }
            spins += 1
            if spins & 63 == 0 && Self.nanoseconds() - start > spinNanoseconds { break }
        }
        pthread_mutex_lock(mutex)
        sleepers.wrappingAdd(1, ordering: .sequentiallyConsistent)
        while ticket.load(ordering: .sequentiallyConsistent) >> Self.sequenceShift == seen {
            pthread_cond_wait(wakeup, mutex)
        }
        sleepers.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(mutex)
        return ticket.load(ordering: .acquiring)
    }

    private static func nanoseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }
}

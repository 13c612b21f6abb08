import Dispatch
import Synchronization

/// Ends calls at their deadlines: one thread for the process, instead of a timer task per call.
///
/// A connection with calls that have deadlines is watched here; the thread sleeps until the earliest
/// deadline any watched connection reported, then asks each to fail its overdue calls
/// (`Connection.expireCalls`) and report its next deadline. A call that is answered in time costs a
/// lock and a dictionary entry — no task, no timer, no wake-up — and a new deadline wakes the thread
/// only when it is earlier than every one it knows.
final class CallDeadlines: Sendable {
    static let shared = CallDeadlines()

    private struct Watched {
        weak var connection: Connection?
        /// Which `watch` last named it: a connection named again while `expire` ran stays watched.
        var generation: UInt64
    }

    private struct State {
        var connections: [ObjectIdentifier: Watched] = [:]
        /// When the thread wakes next (nil: it sleeps until a deadline arrives).
        var wake: ContinuousClock.Instant?
        var started = false
        var generation: UInt64 = 0
    }

    private let state = Mutex(State())
    private let signal = DispatchSemaphore(value: 0)

    /// `connection` has a call due at `deadline`.
    func watch(_ connection: Connection, until deadline: ContinuousClock.Instant) {
        let (start, earlier) = state.withLock { s -> (Bool, Bool) in
            s.generation &+= 1
            s.connections[ObjectIdentifier(connection)] = Watched(connection: connection, generation: s.generation)
            let earlier = s.wake.map { deadline < $0 } ?? true
            if earlier { s.wake = deadline }
            defer { s.started = true }
            return (!s.started, earlier)
        }
        if start { startThread(name: "colocate.deadlines") { [self] in run() } }
        if earlier && !start { signal.signal() }
    }

    private func run() {
        while true {
            let wake = state.withLock { $0.wake }
            if let wake {
                let now = ContinuousClock.now
                if wake > now {
                    let wait = wake - now
                    let ns = wait.components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
                    let nanos = ns.overflow ? Int64.max : ns.partialValue &+ wait.components.attoseconds / 1_000_000_000
                    _ = signal.wait(timeout: .now() + .nanoseconds(Int(clamping: nanos)))
                    continue  // woken early (an earlier deadline) or on time: look again
                }
            } else {
                signal.wait()
                continue
            }
            expire()
        }
    }

    /// Fails every overdue call and sets the next wake-up to the earliest deadline still pending.
    private func expire() {
        let watched = state.withLock { s -> [(Connection, UInt64)] in
            s.wake = nil
            return s.connections.values.compactMap { w in w.connection.map { ($0, w.generation) } }
        }
        let now = ContinuousClock.now
        var due: ContinuousClock.Instant?
        var done: [ObjectIdentifier: UInt64] = [:]
        for (connection, generation) in watched {
            if let deadline = connection.expireCalls(at: now) {
                due = due.map { min($0, deadline) } ?? deadline
            } else {
                done[ObjectIdentifier(connection)] = generation
            }
        }
        state.withLock { s in
            // Forget connections with nothing left due, unless a call named them again meanwhile.
            s.connections = s.connections.filter { id, w in w.connection != nil && done[id] != w.generation }
            if let due, s.wake.map({ due < $0 }) ?? true { s.wake = due }
        }
    }
}

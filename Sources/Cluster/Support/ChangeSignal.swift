import Synchronization

/// Wakes waiters whenever shared state changed (resources released, placement groups created), so
/// that they retry. A generation counter closes the gap between "tried and failed" and "started
/// waiting": a waiter passes the generation it saw, and returns at once if it has moved on since.
final class ChangeSignal: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }
    private let state = Mutex(State())

    init() {}

    var generation: UInt64 { state.withLock { $0.generation } }

    /// How many are waiting now (for tests that must know a waiter is parked).
    var waiterCount: Int { state.withLock { $0.waiters.count } }

    func notifyAll() {
        let waiters = state.withLock { s in
            s.generation &+= 1
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume() }
    }

    /// Returns after a change newer than `seen`, or at `deadline` (nil: no deadline).
    func wait(after seen: UInt64, until deadline: ContinuousClock.Instant?) async {
        let id = state.withLock { s in s.nextWaiter += 1; return s.nextWaiter }
        let timer = deadline.map { deadline in
            Task { [weak self] in
                try? await Task.sleep(until: deadline, clock: .continuous)
                self?.expire(id)
            }
        }
        defer { timer?.cancel() }
        await withCheckedContinuation { c in
            let now = state.withLock { s in
                if s.generation != seen { return true }
                if let deadline, ContinuousClock.now >= deadline { return true }
                s.waiters[id] = c
                return false
            }
            if now { c.resume() }
        }
    }

    private func expire(_ id: UInt64) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
    }
}

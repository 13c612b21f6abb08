import Dispatch
import Synchronization

/// A value that arrives once, awaited by any number of tasks or threads. The first `resolve` wins.
///
/// Used for "the worker said hello", "the process was reaped", "stop was requested": events that
/// one thread produces and several parties wait for, some with a deadline.
final class Promise<Value: Sendable>: Sendable {
    private struct State {
        var result: Result<Value, any Error>?
        var waiters: [UInt64: CheckedContinuation<Result<Value, any Error>?, Never>] = [:]
        var blockingWaiters: [DispatchSemaphore] = []
        var nextWaiter: UInt64 = 0
    }
    private let state = Mutex(State())

    init() {}

    /// Sets the result if none is set yet and wakes every waiter. Returns whether this call set it.
    @discardableResult
    func resolve(_ result: Result<Value, any Error>) -> Bool {
        typealias Waiters = (continuations: [CheckedContinuation<Result<Value, any Error>?, Never>], semaphores: [DispatchSemaphore])
        let woken: Waiters? = state.withLock { s in
            guard s.result == nil else { return nil }
            s.result = result
            defer { s.waiters = [:]; s.blockingWaiters = [] }
            return (Array(s.waiters.values), s.blockingWaiters)
        }
        guard let woken else { return false }
        let (waiters, semaphores) = woken
        for w in waiters { w.resume(returning: result) }
        for s in semaphores { s.signal() }
        return true
    }

    func succeed(_ value: Value) { resolve(.success(value)) }
    func fail(_ error: any Error) { resolve(.failure(error)) }

    /// The result if already resolved.
    var peek: Result<Value, any Error>? { state.withLock { $0.result } }

    /// Waits for the result.
    func value() async throws -> Value {
        // Without a deadline the wait cannot time out, so the optional is always set.
        try await wait(deadline: nil)!.get()
    }

    /// Waits until the result arrives or `timeout` passes (then nil).
    func value(timeout: Duration) async -> Result<Value, any Error>? {
        await wait(deadline: .now + timeout)
    }

    private func wait(deadline: ContinuousClock.Instant?) async -> Result<Value, any Error>? {
        if let r = peek { return r }
        let id = state.withLock { s in s.nextWaiter += 1; return s.nextWaiter }
        let timer = deadline.map { deadline in
            Task { [weak self] in
                try? await Task.sleep(until: deadline, clock: .continuous)
                self?.expire(id)
            }
        }
        defer { timer?.cancel() }
        return await withCheckedContinuation { c in
            let immediate: Result<Value, any Error>?? = state.withLock { s in
                if let r = s.result { return .some(r) }
                if let deadline, ContinuousClock.now >= deadline { return .some(nil) }
                s.waiters[id] = c
                return .none
            }
            if let immediate { c.resume(returning: immediate) }
        }
    }

    private func expire(_ id: UInt64) {
        let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.resume(returning: nil)
    }

    /// Blocks the calling thread (never a task) until the result arrives or `timeout` passes.
    func waitBlocking(timeout: Duration) -> Result<Value, any Error>? {
        let semaphore = DispatchSemaphore(value: 0)
        let ready: Result<Value, any Error>? = state.withLock { s in
            if let r = s.result { return r }
            s.blockingWaiters.append(semaphore)
            return nil
        }
        if let ready { return ready }
        let nanos = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        _ = semaphore.wait(timeout: .now() + .nanoseconds(Int(nanos)))
        return peek
    }
}

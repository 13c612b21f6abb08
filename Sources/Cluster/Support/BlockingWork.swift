import Foundation

/// Runs work that blocks its thread — a futex wait on a weight gate, a device executor's semaphore, a
/// long synchronous kernel sequence — on a thread of its own, and suspends the caller meanwhile.
///
/// Why: Swift concurrency runs every task on a few pool threads (one per core). A handler that blocks
/// one of them (waiting up to a minute for a gate, say) takes that core from every other task of the
/// process, including the connection work that would let the wait end; with a few such waits the
/// process stops making progress. A thread per call costs tens of microseconds, nothing beside a
/// generation or a weight sync. An actor's handler that blocks is better declared with
/// `Handlers.onBlocking`: it then runs on the actor's own thread, with no thread started per call.
public enum BlockingWork {
    /// Runs `body` on a new thread and returns (or throws) what it did.
    public static func run<T: Sendable>(name: String = "colocate.blocking", _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try body() })
            }
            thread.name = name
            thread.start()
        }
    }
}

import Dispatch
import Foundation
import Synchronization

/// A thread that lives as long as the process and runs the jobs handed to it, one at a time.
///
/// Processes are spawned here because `PR_SET_PDEATHSIG` fires when the *thread* that created the
/// child exits, not the process: a Swift concurrency pool thread may be retired when idle, which would
/// kill every worker it had started.
final class DedicatedThread: Sendable {
    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let available = DispatchSemaphore(value: 0)

    init(name: String) {
        let thread = Thread { [self] in
            while true {
                available.wait()
                let job = jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                job?()
            }
        }
        thread.name = name
        thread.start()
    }

    /// Runs `body` on the thread, after the jobs handed to it before; returns at once.
    func post(_ body: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.append(body) }
        available.signal()
    }

    /// Runs `body` on the thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { c in
            jobs.withLock { $0.append { c.resume(returning: body()) } }
            available.signal()
        }
    }

    /// The thread that spawns every worker of this process.
    static let spawner = DedicatedThread(name: "colocate.spawner")
}

/// Starts a detached thread for a blocking loop (a connection reader, an accept loop, a reaper).
func startThread(name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread(block: body)
    thread.name = name
    thread.start()
}

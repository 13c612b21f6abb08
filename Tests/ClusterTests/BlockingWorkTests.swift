import Dispatch
import Foundation
import Testing
@testable import Cluster

@Suite("Blocking work")
struct BlockingWorkTests {
    @Test("Waits run on their own threads: many at once leave the concurrency pool free", .timeLimit(.minutes(1)))
    func blockingWaitsLeaveThePoolFree() async throws {
        // More blocked waits than the pool has threads: run on pool threads, they would take all of
        // them, and the task below (which releases them) could never run.
        let waiters = 4 * ProcessInfo.processInfo.activeProcessorCount + 4
        let gate = DispatchSemaphore(value: 0)
        let entered = DispatchSemaphore(value: 0)
        let results = Task {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<waiters {
                    group.addTask {
                        try await BlockingWork.run {
                            entered.signal()
                            gate.wait()
                            return i
                        }
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        // Every waiter is blocked (on its own thread) before the pool is asked for more work.
        for _ in 0..<waiters {
            try await BlockingWork.run { entered.wait() }
        }
        let progressed = await Task { 41 + 1 }.value
        #expect(progressed == 42)
        for _ in 0..<waiters { gate.signal() }
        #expect(try await results.value == waiters * (waiters - 1) / 2)
    }

    @Test("Errors come back to the caller")
    func errorsPropagate() async {
        await #expect(throws: ClusterError.self) {
            try await BlockingWork.run { () throws -> Int in throw ClusterError("nope") }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Compute
import Diagnostics
import Foundation
import Testing
@testable import Cluster

/// Calls end: at their deadline, when their task is cancelled, at once when the message cannot be
/// sent; and closing a connection does not wait for a send that cannot finish.
@Suite("Call deadlines and connection teardown")
struct DeadlineTests {
    @Test("A worker that is alive but hung fails the call at its deadline, naming the actor")
    func hungWorkerTimesOut() async throws {
        let cluster = try makeCluster()
        let a = try await cluster.spawn(actorType: "EchoActor", name: "frozen")
        let pid = try #require(a.pid)
        // Stopped, not dead: its socket stays open and nothing closes the connection.
        #expect(kill(pid, SIGSTOP) == 0)
        // A signal is delivered asynchronously: wait until the process is seen stopped.
        #expect(await eventually { processState(pid) == "T" })
        let error = try await #require(throws: ClusterError.self) { try await a.call(Ping(), timeout: .milliseconds(300)) }
        #expect(error.code == .timedOut)
        #expect(error.message.contains("'frozen'") && error.message.contains("colocate.ping"))
        #expect(kill(pid, SIGCONT) == 0)
        // The connection survives a timed-out call: the late reply is dropped, the next call answered.
        #expect(try await a.call(Echo("back"), timeout: .seconds(60)) == "back")
        await cluster.shutdown()
    }

    @Test("A short deadline ends its call while a call with a later deadline keeps waiting")
    func deadlinesEndInTheirOrder() async throws {
        let cluster = try makeCluster()
        let a = try await cluster.spawn(actorType: "EchoActor", name: "sleepy")
        // The long deadline is known first: the short one must still end its call on time.
        let long = Task { try await a.call(SleepFor(milliseconds: 600_000), timeout: .seconds(600)) }
        let error = try await #require(throws: ClusterError.self) { try await a.call(SleepFor(milliseconds: 600_000), timeout: .milliseconds(200)) }
        #expect(error.code == .timedOut && error.message.contains("'sleepy'") && error.message.contains("echo.sleep"))
        // The long call still waits; cancelling it ends it.
        long.cancel()
        let cancelled = try await #require(throws: ClusterError.self) { try await long.value }
        #expect(cancelled.code == .cancelled)
        #expect(try await a.call(Echo("on")) == "on")
        await cluster.shutdown()
    }

    @Test("The cluster's default deadline applies when a call gives none")
    func defaultDeadline() async throws {
        let cluster = try makeCluster { $0.callTimeout = .milliseconds(300) }
        let a = try await cluster.spawn(actorType: "EchoActor", name: "slow")
        #expect(a.callTimeout == .milliseconds(300))
        let error = try await #require(throws: ClusterError.self) { try await a.call(SleepFor(milliseconds: 600_000)) }
        #expect(error.code == .timedOut && error.message.contains("'slow'"))
        await cluster.shutdown()
    }

    @Test("Cancelling the calling task ends the call")
    func cancellationEndsTheCall() async throws {
        let cluster = try makeCluster()
        let a = try await cluster.spawn(actorType: "EchoActor", name: "sleeper")
        let call = Task { try await a.call(SleepFor(milliseconds: 600_000), timeout: .seconds(600)) }
        // Cancelled whether the call is registered yet or not.
        call.cancel()
        let error = try await #require(throws: ClusterError.self) { try await call.value }
        #expect(error.code == .cancelled && error.message.contains("'sleeper'"))
        #expect(try await a.call(Echo("awake")) == "awake")
        await cluster.shutdown()
    }

    @Test("callAll with failFast returns on the first failure and cancels the other calls")
    func failFast() async throws {
        let cluster = try makeCluster()
        let group = try await cluster.spawnGroup(actorType: "EchoActor", config: EchoActor.Config(), placements: [nil, nil], name: "pair")
        group.ranks[0].kill()
        #expect(await eventually { group.ranks[0].termination != nil })
        // Rank 1 sleeps for an hour; its call's deadline is 120 s. Waiting for every call would end
        // at that deadline; fail-fast ends with rank 0's death, long before.
        let began = ContinuousClock.now
        let error = try await #require(throws: ActorDiedError.self) {
            try await group.callAll(SleepFor(milliseconds: 3_600_000), timeout: .seconds(120), failFast: true)
        }
        #expect(ContinuousClock.now - began < .seconds(120))
        #expect(error.actor == "pair-rank0")
        await cluster.shutdown()
    }

    @Test("Without failFast every call ends before callAll throws the first error")
    func waitsForEveryCall() async throws {
        let cluster = try makeCluster()
        let group = try await cluster.spawnGroup(actorType: "EchoActor", config: EchoActor.Config(), placements: [nil, nil], name: "duo")
        group.ranks[0].kill()
        #expect(await eventually { group.ranks[0].termination != nil })
        let error = try await #require(throws: ActorDiedError.self) {
            try await group.callAll(SleepFor(milliseconds: 300), timeout: .seconds(120))
        }
        #expect(error.actor == "duo-rank0")
        await cluster.shutdown()
    }

    @Test("The sender refuses a frame the reader would refuse, instead of trapping or sending it")
    func senderChecksFrameLimits() throws {
        let longName = Frame(kind: .call, requestID: 1, name: String(repeating: "n", count: 70_000), payload: [])
        let error = try #require(throws: ClusterError.self) { try longName.encoded(fdCount: 0) }
        #expect(error.code == .messageTooLarge)
        let fine = Frame(kind: .call, requestID: 1, name: "ok", payload: [1, 2, 3])
        let bytes = try fine.encoded(fdCount: 0)
        let parsed = try bytes.withUnsafeBytes { try Frame.parse($0) }
        #expect(parsed?.frame.payload == [1, 2, 3] && parsed?.size == bytes.count)
    }

    @Test("close() returns while a send is blocked on a full socket, and the call fails")
    func closeDoesNotWaitForABlockedSend() async throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[1]) }  // the peer: never reads
        let connection = Connection(fd: UniqueFileDescriptor(adopting: pair[0]), hooks: Connection.Hooks(peerName: "deaf"))
        connection.start()
        let sending = Task.detached {
            // 64 MiB: far more than a socket buffer, so the send blocks until the socket shuts down.
            try await connection.call(name: "big", payload: [UInt8](repeating: 7, count: 64 << 20), timeout: nil)
        }
        // Let the send start and fill the socket (the result does not depend on it having started).
        var waited = 0
        while waited < 100 {
            var ready = pollfd(fd: pair[1], events: Int16(POLLIN), revents: 0)
            if poll(&ready, 1, 0) == 1 { break }
            try await Task.sleep(for: .milliseconds(10))
            waited += 1
        }
        connection.close()  // before the fix: waited for the writer lock, held by the blocked send
        await #expect(throws: (any Error).self) { try await sending.value }
        #expect(connection.failure != nil)
    }

    @Test("Accept loops wait, longer each time, when out of descriptors; retry transient failures at once")
    func acceptBackoff() {
        var backoff = AcceptBackoff()
        #expect(backoff.next(after: EINTR) == .retry)
        #expect(backoff.next(after: ECONNABORTED) == .retry)
        guard case .wait(let first) = backoff.next(after: EMFILE), case .wait(let second) = backoff.next(after: ENFILE) else {
            Issue.record("EMFILE/ENFILE must wait before the next accept")
            return
        }
        #expect(first > .zero && second > first)
        for _ in 0..<20 { _ = backoff.next(after: EMFILE) }
        #expect(backoff.next(after: EMFILE) == .wait(AcceptBackoff.longest))
        #expect(backoff.next(after: EBADF) == .stop)
    }
}

/// The state letter of `pid` in /proc (R, S, T for stopped, Z, …), nil when it is gone.
func processState(_ pid: Int32) -> Character? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
}

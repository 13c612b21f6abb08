#if canImport(Glibc)
import Glibc
#endif
import Compute
import Diagnostics
import Foundation
import Testing
@testable import Cluster

/// Tests that start real worker processes (`colocate worker`).
@Suite("Actors")
struct ActorTests {
    let gpu = ResourceBundle(gpu: 1, cpu: 0)

    @Test func workersReportTheirDeviceAndShare() async throws {
        let cluster = try makeCluster()
        let pg = try cluster.placementGroup(Array(repeating: gpu, count: 4), strategy: .pack)
        try await pg.ready()
        let devices = pg.bundleDevices
        let a = try await cluster.spawn(actorType: "EchoActor", config: EchoActor.Config(greeting: "hi "),
                                        placement: .init(group: pg, bundleIndex: 2, deviceFraction: 0.4), name: "a")
        let report = try await a.call(ReportDevice())
        #expect(report.uuid == devices[2]?.uuid)
        #expect(report.device == devices[2])
        #expect(report.deviceFraction == 0.4)
        #expect(report.pid == a.pid)
        #expect(report.actor == "a")
        #expect(a.device == devices[2])
        let context = try await a.call(DescribeContext())
        #expect(context.bundleIndex == 2 && context.rank == 0 && context.worldSize == 1 && context.greeting == "hi ")
        #expect(try await a.call(Echo("there")) == "hi there")
        _ = try await a.call(Ping())
        await cluster.shutdown()
    }

    @Test func remoteErrorsCarryTheActorAndMessage() async throws {
        let cluster = try makeCluster()
        let a = try await cluster.spawn(actorType: "EchoActor", name: "failing")
        let error = try await #require(throws: RemoteError.self) { try await a.call(FailWith(message: "boom")) }
        #expect(error.actor == "failing")
        #expect(error.message == "EchoFailure: boom")
        // The actor survives its handler's error.
        #expect(try await a.call(Echo("still here")) == "still here")

        struct NotHandled: RemoteCall {
            typealias Reply = Empty
            static let name = "test.notHandled"
        }
        // An error without a code arrives without one.
        #expect(error.errorType == nil && error.codeName == nil && error.code(of: ClusterError.self) == nil)
        let unknown = try await #require(throws: RemoteError.self) { try await a.call(NotHandled()) }
        #expect(unknown.message.contains("no handler for 'test.notHandled'") && unknown.message.contains("echo.echo"))
        // A ClusterError thrown by the worker arrives with its type and code.
        #expect(unknown.code(of: ClusterError.self) == .invalidArgument && unknown.errorType == "Cluster.ClusterError", "\(unknown)")

        let badType = try await #require(throws: RemoteError.self) { try await cluster.spawn(actorType: "NoSuchActor") }
        #expect(badType.message.contains("unknown actor type 'NoSuchActor'") && badType.message.contains("EchoActor"))
        #expect(badType.code(of: ClusterError.self) == .invalidArgument, "\(badType)")
        await cluster.shutdown()
    }

    /// Blocking handlers run on the actor's thread, async ones in tasks: in one mailbox, one at a
    /// time, and a blocking handler's error keeps its type and code.
    @Test func blockingAndAsyncHandlersShareTheMailboxOneAtATime() async throws {
        let cluster = try makeCluster()
        let a = try await cluster.spawn(actorType: "EchoActor", name: "mailbox")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<300 {
                group.addTask {
                    if i % 2 == 0 { _ = try await a.call(TouchMailboxBlocking()) } else { _ = try await a.call(TouchMailbox()) }
                }
            }
            try await group.waitForAll()
        }
        let stats = try await a.call(MailboxStats())
        #expect(stats.calls == 300 && stats.mostAtOnce == 1, "\(stats)")
        let error = try await #require(throws: RemoteError.self) { try await a.call(TouchMailboxBlocking(fail: true)) }
        #expect(error.code(of: ClusterError.self) == .invalidArgument && error.message.contains("told to fail"), "\(error)")
        // Built-in calls are answered beside the mailbox, and the actor goes on after the error.
        _ = try await a.call(Ping())
        _ = try await a.call(TouchMailboxBlocking())
        #expect(try await a.call(MailboxStats()).calls == 302)
        await cluster.shutdown()
    }

    @Test func descriptorsTravelBothWays() async throws {
        let cluster = try makeCluster()
        let a = try await cluster.spawn(actorType: "EchoActor")
        // Worker -> driver: the worker writes shared memory, the driver maps the descriptor it received.
        let (count, fds) = try await a.call(ShareText(text: "weights from the trainer"), attachments: [])
        let fd = try #require(fds.first)
        let mapped = try HostMemory.map(fileDescriptor: fd.release(), byteCount: count, device: .host, keepDescriptor: true)
        #expect(readText(mapped) == "weights from the trainer")
        // Driver -> worker: the worker reads and modifies the driver's memory in place.
        let memory = try sharedText("to the engine")
        let attachment = try OwnedFD.duplicating(try #require(memory.sharedFileDescriptor))
        let (read, _) = try await a.call(UppercaseSharedText(byteCount: memory.byteCount), attachments: [attachment, attachment])
        #expect(read == "to the engine")
        #expect(readText(memory) == "TO THE ENGINE")
        await cluster.shutdown()
    }

    @Test("A descriptor lent through a worker's exchange is fetched here; withdrawn or its lender dead, it is refused")
    func descriptorExchangeAcrossProcesses() async throws {
        let cluster = try makeCluster()
        let a = try await cluster.spawn(actorType: "EchoActor", name: "lender")
        let lent = try await a.call(LendText(text: "weights by descriptor"))
        let reference = try DescriptorReference(bytes: lent.reference)
        #expect(reference.pid == a.pid)
        let mapped = try HostMemory.map(owning: try DescriptorExchange.fetch(reference), byteCount: lent.byteCount, device: .host)
        #expect(readText(mapped) == "weights by descriptor")

        var forged = reference
        forged.secret[0] &+= 1
        #expect(throws: ComputeError.self) { _ = try DescriptorExchange.fetch(forged) }
        _ = try await a.call(WithdrawText(reference: lent.reference))
        let withdrawn = #expect(throws: ComputeError.self) { _ = try DescriptorExchange.fetch(reference) }
        #expect(withdrawn?.message.contains("no longer shares") == true)
        #expect(readText(mapped) == "weights by descriptor")  // what was fetched stays valid

        let again = try DescriptorReference(bytes: try await a.call(LendText(text: "x")).reference)
        kill(try #require(a.pid), SIGKILL)
        #expect(await eventually { a.termination != nil })  // reaped: no zombie left
        let dead = #expect(throws: ComputeError.self) { _ = try DescriptorExchange.fetch(again) }
        #expect(dead?.message.contains("has exited") == true)
        await cluster.shutdown()
    }

    @Test func killedWorkerFailsPendingAndLaterCalls() async throws {
        let cluster = try makeCluster()
        let a = try await cluster.spawn(actorType: "EchoActor", name: "victim")
        let pid = try #require(a.pid)
        let pending = Task { try await a.call(SleepFor(milliseconds: 600_000)) }
        // Make sure the call is in flight (the actor answers pings while it sleeps).
        _ = try await a.call(Ping())
        kill(pid, SIGKILL)
        let error = try await #require(throws: ActorDiedError.self) { try await pending.value }
        #expect(error.actor == "victim")
        #expect(error.termination == .signaled(signal: SIGKILL))
        #expect(error.description.contains("SIGKILL"))
        let later = try await #require(throws: ActorDiedError.self) { try await a.call(Echo("anyone?")) }
        #expect(later.actor == "victim")
        #expect(a.termination == .signaled(signal: SIGKILL))
        await cluster.shutdown()
    }

    @Test func workersDieWithTheirDriver() async throws {
        let cluster = try makeCluster()
        // The actor becomes a driver itself, with a child worker of its own.
        let driver = try await cluster.spawn(actorType: "EchoActor", name: "inner-driver")
        let grandchild = try await driver.call(SpawnChild())
        #expect(grandchild > 0 && grandchild != driver.pid)
        #expect(!processIsGone(grandchild))
        // A stopped worker cannot notice its driver's socket closing: only the parent-death signal
        // (SIGKILL, which works on stopped processes) can end it.
        kill(grandchild, SIGSTOP)
        driver.kill()
        #expect(await eventually { processIsGone(grandchild) }, "worker \(grandchild) outlived its driver")
        await cluster.shutdown()
    }

    @Test func groupsOfRanksKnowEachOtherAndCallPeers() async throws {
        let cluster = try makeCluster()
        let pg = try cluster.placementGroup(Array(repeating: gpu, count: 4))
        try await pg.ready()
        let engine = try await cluster.spawnGroup(
            actorType: "EchoActor", configs: [EchoActor.Config(greeting: "r0:"), EchoActor.Config(greeting: "r1:")],
            placements: [ActorPlacement(group: pg, bundleIndex: 0, deviceFraction: 0.4),
                         ActorPlacement(group: pg, bundleIndex: 1, deviceFraction: 0.4)],
            name: "engine-0")
        let contexts = try await engine.callAll(DescribeContext())
        #expect(contexts.map(\.rank) == [0, 1])
        #expect(contexts.allSatisfy { $0.worldSize == 2 && $0.groupName == "engine-0" })
        #expect(contexts[0].peerNames == ["engine-0-rank0", "engine-0-rank1"])
        let devices = try await engine.callAll(ReportDevice())
        #expect(devices.map(\.uuid) == [pg.bundleDevices[0]?.uuid, pg.bundleDevices[1]?.uuid])
        // Actor to actor, not through the driver.
        let answer = try await engine.ranks[0].call(CallPeer(address: engine.ranks[1].address, text: "ping"))
        #expect(answer == "r1:ping")
        await cluster.shutdown()
    }

    @Test func workersCallTheDriver() async throws {
        let cluster = try makeCluster { options in
            options.driverHandlers.on(Echo.self) { call, ctx in "driver got '\(call.text)' from \(ctx.caller)" }
        }
        let a = try await cluster.spawn(actorType: "EchoActor", name: "caller")
        #expect(try await a.call(CallDriver(text: "hello")) == "driver got 'hello' from caller")
        await cluster.shutdown()
    }

    @Test func manyCallsInFlightAndLargePayloads() async throws {
        let cluster = try makeCluster()
        let a = try await cluster.spawn(actorType: "EchoActor")
        let replies = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for i in 0..<200 { group.addTask { (i, try await a.call(Echo("#\(i)"))) } }
            var replies = [Int: String]()
            for try await (i, r) in group { replies[i] = r }
            return replies
        }
        #expect(replies.count == 200 && replies.allSatisfy { $0.value == "#\($0.key)" })
        let big = String(repeating: "0123456789abcdef", count: 1 << 16)   // 1 MiB, many reads per frame
        #expect(try await a.call(Echo(big)) == big)
        await cluster.shutdown()
    }

    @Test func aGroupThatFailsToStartLeavesNothingRunning() async throws {
        let cluster = try makeCluster()
        let pg = try cluster.placementGroup([gpu, gpu])
        try await pg.ready()
        let error = try await #require(throws: ClusterError.self) {
            try await cluster.spawnGroup(
                actorType: "EchoActor", config: EchoActor.Config(),
                placements: [ActorPlacement(group: pg, bundleIndex: 0, deviceFraction: 1),
                             ActorPlacement(group: pg, bundleIndex: 7, deviceFraction: 1)],
                name: "broken")
        }
        #expect(error.message.contains("bundle index 7"))
        // Rank 0 started and was stopped again: its whole device is free.
        let whole = try await cluster.spawn(actorType: "EchoActor", placement: .init(group: pg, bundleIndex: 0, deviceFraction: 1))
        #expect(try await whole.call(ReportDevice()).deviceFraction == 1)
        await cluster.shutdown()
    }

    @Test func workersInheritNoStrayDescriptors() async throws {
        // A pipe opened without close-on-exec, as Foundation's `Pipe` does.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let ours = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fds[1])")
        let cluster = try makeCluster()
        let a = try await cluster.spawn(actorType: "EchoActor")
        let pid = try #require(a.pid)
        let theirs = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")
        }
        #expect(!theirs.isEmpty)
        #expect(!theirs.contains(ours), "the worker inherited \(ours)")
        await cluster.shutdown()
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Compute
import Diagnostics
import Foundation
import Testing
@testable import Cluster

/// Placement groups and shares with real worker processes.
@Suite("Placement")
struct PlacementTests {
    let gpu = ResourceBundle(gpu: 1, cpu: 0)

    @Test func sharesFitOrFailNamingTheBundle() async throws {
        let cluster = try makeCluster()
        let pg = try cluster.placementGroup([gpu, gpu], name: "seed")
        try await pg.ready()
        _ = try await cluster.spawn(actorType: "EchoActor", placement: .init(group: pg, bundleIndex: 0, deviceFraction: 0.6), name: "t")
        _ = try await cluster.spawn(actorType: "EchoActor", placement: .init(group: pg, bundleIndex: 0, deviceFraction: 0.4), name: "e")
        let error = try await #require(throws: ClusterError.self) {
            try await cluster.spawn(actorType: "EchoActor", placement: .init(group: pg, bundleIndex: 0, deviceFraction: 0.0001), name: "x")
        }
        #expect(error.message.contains("bundle 0 of placement group 'seed'") && error.message.contains("t: 0.6, e: 0.4"))
        let range = try await #require(throws: ClusterError.self) {
            try await cluster.spawn(actorType: "EchoActor", placement: .init(group: pg, bundleIndex: 5, deviceFraction: 0.1))
        }
        #expect(range.message.contains("out of range"))
        let fraction = try await #require(throws: ClusterError.self) {
            try await cluster.spawn(actorType: "EchoActor", placement: .init(group: pg, bundleIndex: 1, deviceFraction: 1.5))
        }
        #expect(fraction.message.contains("0 < fraction <= 1"))
        await cluster.shutdown()
    }

    @Test func waitingShareProceedsWhenAnotherIsReleased() async throws {
        let cluster = try makeCluster()
        let pg = try cluster.placementGroup([gpu])
        try await pg.ready()
        let first = try await cluster.spawn(actorType: "EchoActor", placement: .init(group: pg, bundleIndex: 0, deviceFraction: 0.7))
        let second = Task {
            try await cluster.spawn(actorType: "EchoActor", placement: .init(group: pg, bundleIndex: 0, deviceFraction: 0.7, waitTimeout: .seconds(600)))
        }
        // Stop the first only once the second is parked waiting for its share.
        #expect(await eventually(within: .seconds(60)) { cluster.changes.waiterCount > 0 })
        await first.stop()
        let started = try await second.value
        #expect(try await started.call(ReportDevice()).deviceFraction == 0.7)
        await cluster.shutdown()
    }

    @Test func removingAGroupStopsItsActorsAndFreesItsDevices() async throws {
        let cluster = try makeCluster(.cpu(count: 2, capacity: 64 << 20))
        let first = try cluster.placementGroup([gpu, gpu])
        try await first.ready()
        let second = try cluster.placementGroup([gpu])
        #expect(!second.isReady)
        #expect(await second.wait(timeout: .milliseconds(1)) == false)
        let a = try await cluster.spawn(actorType: "EchoActor", placement: .init(group: first, bundleIndex: 1, deviceFraction: 1), name: "a")
        let pid = try #require(a.pid)
        await first.remove()
        #expect(a.termination != nil)
        #expect(processIsGone(pid))
        _ = try await #require(throws: ActorDiedError.self) { try await a.call(Ping()) }
        try await second.ready()
        #expect(second.bundleDevices.count == 1 && second.bundleDevices[0] != nil)
        let removed = try await #require(throws: ClusterError.self) {
            try await cluster.spawn(actorType: "EchoActor", placement: .init(group: first, bundleIndex: 0, deviceFraction: 0.5))
        }
        #expect(removed.message.contains("removed"))
        await cluster.shutdown()
    }

    @Test func shutdownLeavesNoProcessesAndNoSockets() async throws {
        let cluster = try makeCluster()
        let directory = cluster.socketDirectoryPath
        var st = stat()
        #expect(lstat(directory, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o700)
        #expect(st.st_uid == getuid())
        let actors = [try await cluster.spawn(actorType: "EchoActor"), try await cluster.spawn(actorType: "EchoActor")]
        await cluster.shutdown()
        #expect(actors.allSatisfy { $0.pid.map(processIsGone) ?? false })
        #expect(access(directory, F_OK) != 0)
        _ = try await #require(throws: ClusterError.self) { try await cluster.spawn(actorType: "EchoActor") }
    }

    @Test func peersAreCheckedForTheSameUser() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let credentials = try UnixSocket.peerCredentials(fds[0])
        #expect(credentials.uid == getuid() && credentials.pid == getpid())
        #expect(UnixSocket.peerIsSameUser(fds[0]))
        // No credentials (not a socket): refused.
        var pipeFDs: [Int32] = [0, 0]
        #expect(pipe(&pipeFDs) == 0)
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }
        #expect(!UnixSocket.peerIsSameUser(pipeFDs[0]))
    }

    @Test func workerRefusesToRunByHand() async throws {
        let (status, message) = try await runColocate(["worker"], environment: ["PATH": "/usr/bin:/bin"])
        #expect(status == 2)
        #expect(message.contains("started by a cluster driver"))
    }

    @Test func planPrintsTheSeedLayoutOrTheReason() async throws {
        func plan(_ arguments: [String]) async throws -> (Int32, String) { try await runColocate(["plan"] + arguments) }
        let (ok, table) = try await plan(["--devices", "cpu:4:1GiB", "--tp", "2", "--trainer-fraction", "0.4", "--worker-fraction", "0.4"])
        #expect(ok == 0)
        let uuids = try VirtualCPUDevices(count: 4, capacity: 1 << 30).devices().map(\.uuid)
        for uuid in uuids { #expect(table.contains(uuid)) }
        #expect(table.contains("trainer-3 0.4, engine-1-rank1 0.4"))
        let (failed, reason) = try await plan(["--devices", "cpu:4", "--tp", "2", "--trainer-fraction", "0.7", "--worker-fraction", "0.4"])
        #expect(failed != 0)
        #expect(reason.contains("infeasible layout") && reason.contains("only 0.3 is free"))
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Compute
import Diagnostics
import Engine
import Models
import Foundation
import Testing

@testable import Cluster

/// The cluster API on Ray: a simulated cluster of two nodes with two virtual CPU devices each, shared
/// by these tests (serialized: they would otherwise compete for its four devices).
@Suite(.serialized, .enabled(if: RayTestCluster.python != nil, RayTestCluster.skipReason))
struct RayClusterTests {
    /// The seed's layout: 4 one-device bundles, 4 trainers and 2 engines of TP 2, every actor taking
    /// half of its bundle's device. PACK fills one node before the next, so engine 0 is on one node,
    /// engine 1 on the other, and each trainer shares its device (by UUID) with the engine rank there.
    @Test func packPlacesTheSeedLayoutAcrossNodesColocatedByUUID() async throws {
        let (cluster, ray) = try await makeRayCluster()
        let pg = try cluster.placementGroup(Array(repeating: ResourceBundle(gpu: 1), count: 4), strategy: .pack, name: "seed")
        try await pg.ready()
        let nodes = try #require(pg.bundleNodes)
        let simulated = ray.nodes.withLock { $0 }
        #expect(nodes.count == 4 && nodes[0] == nodes[1] && nodes[2] == nodes[3] && nodes[0] != nodes[2], "\(nodes)")
        #expect(Set(nodes) == Set(simulated))

        var trainers: [ActorRef] = []
        for i in 0..<4 {
            trainers.append(try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config(),
                                                    placement: .init(group: pg, bundleIndex: i, deviceFraction: 0.5), name: "trainer-\(i)"))
        }
        var engines: [ActorGroup] = []
        for e in 0..<2 {
            engines.append(try await cluster.spawnGroup(
                actorType: EchoActor.typeName, config: EchoActor.Config(),
                placements: [.init(group: pg, bundleIndex: 2 * e, deviceFraction: 0.5), .init(group: pg, bundleIndex: 2 * e + 1, deviceFraction: 0.5)],
                name: "engine-\(e)"))
        }
        let trainerDevices = try await trainers.asyncMap { try await $0.call(ReportDevice()) }
        let bundleDevices = pg.bundleDevices
        for (i, report) in trainerDevices.enumerated() {
            #expect(report.uuid != nil && report.uuid == bundleDevices[i]?.uuid && report.deviceFraction == 0.5)
            #expect(trainers[i].device?.uuid == report.uuid)
        }
        #expect(Set(trainerDevices.compactMap(\.uuid)).count == 4)
        for (e, engine) in engines.enumerated() {
            let ranks = try await engine.callAll(ReportDevice())
            for (r, report) in ranks.enumerated() {
                #expect(report.uuid == trainerDevices[2 * e + r].uuid, "engine \(e) rank \(r) is not colocated with trainer \(2 * e + r)")
            }
            // The ranks of an engine are on one node and reach each other over their Unix sockets.
            let echoed = try await engine.ranks[0].call(CallPeer(address: engine.ranks[1].address, text: "tp"))
            #expect(echoed.hasSuffix("tp"))
        }
        // Workers call the driver back over the authenticated TCP connection.
        #expect(try await trainers[0].call(CallDriver(text: "x")) == "driver got 'x'")
        let pids = trainerDevices.map(\.pid)
        await pg.remove()
        #expect(await eventually { pids.allSatisfy(processIsGone) })
        await cluster.shutdown()
    }

    @Test func strictSpreadPutsEachBundleOnItsOwnNode() async throws {
        let (cluster, _) = try await makeRayCluster()
        let pg = try cluster.placementGroup([ResourceBundle(gpu: 1), ResourceBundle(gpu: 1)], strategy: .strictSpread)
        try await pg.ready()
        let nodes = try #require(pg.bundleNodes)
        #expect(nodes.count == 2 && nodes[0] != nodes[1])
        let a = try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config(),
                                        placement: .init(group: pg, bundleIndex: 0, deviceFraction: 1), name: "a")
        let b = try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config(),
                                        placement: .init(group: pg, bundleIndex: 1, deviceFraction: 1), name: "b")
        let (da, db) = (try await a.call(ReportDevice()), try await b.call(ReportDevice()))
        #expect(da.uuid != nil && db.uuid != nil && da.uuid != db.uuid)
        #expect(try await a.call(Echo("over tcp")).hasSuffix("over tcp"))
        await cluster.shutdown()
        #expect(await eventually { processIsGone(da.pid) && processIsGone(db.pid) })
    }

    @Test func infeasibleGroupFailsWithinItsDeadlineWithRaysReason() async throws {
        let (cluster, _) = try await makeRayCluster(placementTimeout: .seconds(3))
        // Three bundles on three distinct nodes; the cluster has two that offer devices.
        let pg = try cluster.placementGroup(Array(repeating: ResourceBundle(gpu: 1), count: 3), strategy: .strictSpread, name: "too-spread")
        do {
            try await pg.ready()
            Issue.record("an infeasible group became ready")
        } catch let error as ClusterError {
            #expect(error.code == .infeasible)
            #expect(error.message.contains("too-spread") && error.message.contains("STRICT_SPREAD") && error.message.contains("colocate_cpu_device"), "\(error)")
            #expect(!error.message.contains("\n"))
        }
        await cluster.shutdown()
    }

    @Test func killedHostingActorIsReportedNamingTheActorAndLeavesNoOrphan() async throws {
        let (cluster, _) = try await makeRayCluster()
        let pg = try cluster.placementGroup([ResourceBundle(gpu: 1)], strategy: .pack)
        try await pg.ready()
        let actor = try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config(),
                                            placement: .init(group: pg, bundleIndex: 0, deviceFraction: 0.5), name: "doomed")
        let pid = try await actor.call(ReportDevice()).pid
        let pending = Task { try await actor.call(SleepFor(milliseconds: 60_000)) }
        let killed = ContinuousClock.now
        actor.kill()   // ray.kill of its hosting actor
        do {
            _ = try await pending.value
            Issue.record("a call to a killed actor returned")
        } catch let error as ActorDiedError {
            #expect(error.actor == "doomed")
            print("ray.kill of a hosting actor reached the driver in \(ContinuousClock.now - killed): \(error)")
        }
        #expect(await eventually { processIsGone(pid) })
        await #expect(throws: ActorDiedError.self) { try await actor.call(Ping()) }
        await cluster.shutdown()
    }

    @Test func removedNodeIsReportedNamingTheActorAndLeavesNoOrphan() async throws {
        let (cluster, ray) = try await makeRayCluster()
        let pg = try cluster.placementGroup([ResourceBundle(gpu: 1)], strategy: .pack)
        try await pg.ready()
        let node = try #require(pg.bundleNodes?.first)
        let index = try #require(ray.nodes.withLock { $0.firstIndex(of: node) })
        let actor = try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config(),
                                            placement: .init(group: pg, bundleIndex: 0, deviceFraction: 1), name: "on-node-\(index)")
        let pid = try await actor.call(ReportDevice()).pid
        #expect(try await ray.command("remove \(index)"))
        // The node's workers die with their raylet (their hosting actors end, the parent-death signal
        // ends the worker); the driver's connection then fails every call naming the actor.
        #expect(await eventually(within: .seconds(60)) { processIsGone(pid) }, "worker \(pid) outlived its node")
        do {
            _ = try await actor.call(Ping(), timeout: .seconds(10))
            Issue.record("a call to an actor whose node was removed returned")
        } catch let error as ActorDiedError {
            #expect(error.actor == "on-node-\(index)")
        }
        #expect(rayHostedWorkerPIDs().isEmpty)
        await pg.remove()
        await cluster.shutdown()
        #expect(try await ray.command("add \(index)"))
    }
}

/// `colocate demo --cluster ray:ADDRESS` as a user runs it, on the shared simulated cluster.
extension RayClusterTests {
    /// A tiny model made once by `colocate init-model`.
    static let model: Result<String, any Error> = Result {
        let dir = NSTemporaryDirectory() + "colocate-ray-tests-\(getpid())/opt-tiny"
        let thread = try runBlocking(["init-model", "--arch", "opt", "--preset", "opt-tiny", "--out", dir])
        guard thread.status == 0 else { throw ClusterError("init-model failed: \(thread.output)") }
        return dir
    }

    @Test func seedDemoRunsAcrossTheRayCluster() async throws {
        let ray = try await RayTestCluster.shared()
        let model = try Self.model.get()
        let r = try await runColocate(["demo", "--model", model, "--devices", "cpu:4", "--tp", "2", "--cluster", "ray:\(ray.address)", "--json"])
        #expect(r.status == 0, "\(r.output)")
        // stdout (the report, pretty-printed) and stderr (the log) arrive together: the report is
        // the text from the line that is just "{".
        let json = String(r.output[try #require(r.output.range(of: "\n{\n")).lowerBound...])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(report["passed"] as? Bool == true)
        let actors = try #require(report["actors"] as? [[String: Any]])
        #expect(actors.count == 8)
        var uuids: Set<String> = []
        for bundle in 0..<4 {
            let here = Set(actors.filter { $0["bundle"] as? Int == bundle }.compactMap { $0["deviceUUID"] as? String })
            #expect(here.count == 1, "bundle \(bundle) actors must share one device")
            uuids.formUnion(here)
        }
        #expect(uuids.count == 4 && uuids.allSatisfy { $0.hasPrefix("CPU-") })
        #expect(Set(report["devices"] as? [String] ?? []) == uuids)
        #expect(await eventually { rayHostedWorkerPIDs().isEmpty })
    }

    /// SIGKILL of the driver mid-run: its helper sees EOF and exits, Ray ends the hosting actors it
    /// owned, and their workers die by their parent-death signal (and by the driver's connection
    /// ending). Nothing is left.
    @Test func killedDriverLeavesNoOrphan() async throws {
        let ray = try await RayTestCluster.shared()
        let model = try Self.model.get()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try ColocateBinary.require())
        process.arguments = ["demo", "--model", model, "--devices", "cpu:4", "--tp", "2", "--cluster", "ray:\(ray.address)"]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        let up = await eventually(within: .seconds(120)) { !rayHostedWorkerPIDs().isEmpty }
        let workers = rayHostedWorkerPIDs()
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(up && !workers.isEmpty, "no worker started before the driver was killed")
        #expect(await eventually(within: .seconds(60)) { workers.allSatisfy(processIsGone) && rayHostedWorkerPIDs().isEmpty },
                "workers outlived their driver: \(rayHostedWorkerPIDs())")
        #expect(await eventually(within: .seconds(30)) { helperPIDs().isEmpty }, "the Ray helper outlived its driver")
    }
}

/// Ray helpers (`python -m colocate_ray.driver`) alive on this machine.
func helperPIDs() -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap { e -> Int32? in
        guard let pid = Int32(e), !processIsGone(pid),
              let cmd = try? String(contentsOfFile: "/proc/\(e)/cmdline", encoding: .utf8) else { return nil }
        return cmd.contains("colocate_ray.driver") ? pid : nil
    }
}

/// Runs the built `colocate` to completion on the calling thread.
func runBlocking(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try ColocateBinary.require())
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, text)
}

extension Array {
    func asyncMap<T>(_ body: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await body(e)) }
        return out
    }
}

/// Joining a Ray cluster that is not there is a one-line error, never a hang (`ray.init` itself
/// retries a missing head for minutes).
extension RayClusterTests {
    @Test func unreachableRayAddressIsAOneLineErrorAtOnce() async throws {
        var rayOptions = RayOptions()
        rayOptions.python = RayTestCluster.python
        do {
            _ = try await Cluster.ray(address: "127.0.0.1:1", rayOptions: rayOptions)
            Issue.record("joined a Ray cluster at 127.0.0.1:1")
        } catch let error as ClusterError {
            #expect(error.message.contains("no Ray cluster answers at 127.0.0.1:1") && error.message.contains("ray start --head"), "\(error)")
            #expect(!error.message.contains("\n"))
        }
    }

    /// A head that accepts connections and never answers: the join fails at its deadline, and the
    /// helper stuck in `ray.init` is ended with it.
    @Test func silentRayAddressFailsAtTheConnectDeadlineAndEndsTheHelper() async throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        try #require(bound)
        let port = UInt16(bigEndian: address.sin_port)
        var rayOptions = RayOptions()
        rayOptions.python = RayTestCluster.python
        rayOptions.connectTimeout = .seconds(3)
        let helpersBefore = Set(helperPIDs())
        do {
            _ = try await Cluster.ray(address: "127.0.0.1:\(port)", rayOptions: rayOptions)
            Issue.record("joined a Ray cluster at a socket that never answers")
        } catch let error as ClusterError {
            #expect(error.code == .timedOut)
            #expect(error.message.contains("no Ray cluster answered at '127.0.0.1:\(port)'"), "\(error)")
        }
        #expect(await eventually { Set(helperPIDs()).subtracting(helpersBefore).isEmpty }, "the Ray helper outlived the failed join")
    }
}

/// An engine of TP 2 whose ranks run on a Ray node, not on the driver's host: they cannot map memory the
/// driver made, so rank 0 makes the all-reduce segment on their host and both join it after starting.
extension RayClusterTests {
    @Test func tensorParallelEngineOnANodeJoinsTheSegmentItsRankZeroMade() async throws {
        let model = try Self.model.get()
        let params = SamplingParams(maxTokens: 8, temperature: 0, ignoreEOS: true)
        let prompts: [[Int32]] = [[2, 5, 9, 4], [2, 7]]

        let (cluster, _) = try await makeRayCluster()
        let onRay: [[Int32]]
        do {
            let pg = try cluster.placementGroup(Array(repeating: ResourceBundle(gpu: 1), count: 2), strategy: .strictPack, name: "tp-engine")
            try await pg.ready()
            let llm = try await LLM(cluster: cluster, model: model, tensorParallelSize: 2, placement: (pg, [0, 1]),
                                    workerFraction: 0.5, memoryUtilization: 0.5, name: "tp-engine")
            let ranks = try await llm.collectiveRPC(DescribeRank())
            #expect(ranks.map(\.allReduceSegmentOwner) == [ranks[0].pid, ranks[0].pid], "\(ranks.map(\.allReduceSegmentOwner))")
            onRay = try await llm.generate(promptTokenIds: prompts, params).map { $0.outputs[0].tokenIds }
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()

        // The same engine on this host (the driver's segment) generates the same tokens.
        var options = ClusterOptions()
        options.workerExecutable = try ColocateBinary.require()
        let local = try Cluster.local(devices: .cpu(count: 2, capacity: 1 << 30), options: options)
        do {
            let pg = try local.placementGroup(Array(repeating: ResourceBundle(gpu: 1), count: 2))
            try await pg.ready()
            let llm = try await LLM(cluster: local, model: model, tensorParallelSize: 2, placement: (pg, [0, 1]),
                                    workerFraction: 0.5, memoryUtilization: 0.5)
            let ranks = try await llm.collectiveRPC(DescribeRank())
            #expect(ranks.map(\.allReduceSegmentOwner) == [getpid(), getpid()])
            #expect(try await llm.generate(promptTokenIds: prompts, params).map { $0.outputs[0].tokenIds } == onRay)
        } catch {
            await local.shutdown()
            throw error
        }
        await local.shutdown()
    }
}

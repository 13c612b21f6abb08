import Cluster
import Diagnostics
import Histogram

/// `colocate bench rpc`: the latency of an empty actor call and the time from spawn to a ready worker.
public struct RPCBenchmark: Sendable {
    /// Round trips measured per call kind.
    public var calls: Int = 20_000
    /// Round trips before measuring.
    public var warmup: Int = 2_000
    /// Workers started (and stopped) to measure start time.
    public var spawns: Int = 20
    /// The control plane measured: Unix sockets, or TCP on 127.0.0.1 with the cluster-secret handshake.
    public var transport: ControlPlane = .unix
    /// When set, the workers run under Ray at this address (`auto`, `HOST:PORT`): the start time
    /// then includes creating the hosting actor, and calls go over TCP.
    public var rayAddress: String?
    /// When > 0, also measure a data-parallel all-reduce of this many f32 between two ranks over the
    /// control plane (`ControlPlaneAllReduce`): on Ray in a STRICT_SPREAD group (two nodes); with the
    /// TCP transport, each worker counts as a host of its own, so the ranks talk over TCP.
    public var allReduceFloats: Int = 0
    public var allReduceIterations: Int = 20

    public init() {}

    public func run() async throws {
        guard calls >= 1, warmup >= 0, spawns >= 1 else {
            throw BenchmarkError("--calls and --spawns must be >= 1, --warmup >= 0")
        }
        // The echo actor is not in the production worker registry: its workers are told to add it.
        var options = ClusterOptions()
        options.workerArguments = DiagnosticActors.workerArguments
        options.controlPlane = transport
        if transport != .unix { options.environment[WorkerEnvironment.hostIdentityKey] = "process" }
        let cluster = try await Cluster.make(rayAddress: rayAddress, devices: .cpu(count: 1), options: options)
        print("control plane: \(cluster.isRay ? "Ray at \(rayAddress!), TCP" : transport == .unix ? "Unix socket" : "TCP \(cluster.controlAddress!)")")
        do {
            var start = RPCBenchmark.histogram()
            for _ in 0..<spawns {
                let began = ContinuousClock.now
                let actor = try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config())
                _ = start.record(RPCBenchmark.nanoseconds(ContinuousClock.now - began))
                await actor.stop()
            }
            let actor = try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config(), name: "bench")
            let ping = try await measure(Ping(), on: actor)
            let noop = try await measure(Noop(), on: actor)
            let echo = try await measure(Echo(String(repeating: "x", count: 1024)), on: actor)
            var allReduce: String?
            if allReduceFloats > 0 { allReduce = try await measureAllReduce(cluster) }
            await cluster.shutdown()

            print("what                                   count       p50       p99     p99.9       max")
            print(RPCBenchmark.row("worker start (spawn -> ready)", start))
            print(RPCBenchmark.row("empty call, built-in Ping", ping))
            print(RPCBenchmark.row("empty call, actor Noop (mailbox)", noop))
            print(RPCBenchmark.row("actor Echo, 1 KiB string", echo))
            if let allReduce { print(allReduce) }
        } catch {
            await cluster.shutdown()
            throw error
        }
    }

    private func measureAllReduce(_ cluster: Cluster) async throws -> String {
        var placements: [ActorPlacement?] = [nil, nil]
        if cluster.isRay {
            let pg = try cluster.placementGroup([ResourceBundle(gpu: 1), ResourceBundle(gpu: 1)], strategy: .strictSpread, name: "allreduce")
            try await pg.ready()
            placements = [.init(group: pg, bundleIndex: 0, deviceFraction: 0.1), .init(group: pg, bundleIndex: 1, deviceFraction: 0.1)]
        }
        let group = try await cluster.spawnGroup(actorType: EchoActor.typeName, config: EchoActor.Config(), placements: placements, name: "allreduce")
        _ = try await group.callAll(AllReduceProbe(floats: allReduceFloats, iterations: 2))
        let replies = try await group.callAll(AllReduceProbe(floats: allReduceFloats, iterations: allReduceIterations))
        guard replies.allSatisfy({ $0.first == 3 && $0.count == allReduceFloats }) else {
            throw BenchmarkError("the all-reduce gave a wrong sum: \(replies.map(\.first))")
        }
        let seconds = (replies.map(\.seconds).max() ?? 0) / Double(allReduceIterations)
        let megabytes = Double(allReduceFloats * 4) / 1e6
        await group.stop()
        return String(format: "all-reduce, 2 ranks, %.1f MB of f32: %.2f ms each, %.0f MB/s per rank (%@)", megabytes, seconds * 1e3,
                      megabytes / seconds, cluster.isRay ? "Ray, two nodes, TCP" : transport == .unix ? "one host, Unix sockets" : "ranks as separate hosts, TCP")
    }

    private func measure<C: RemoteCall>(_ call: C, on actor: ActorRef) async throws -> Histogram<UInt64> {
        for _ in 0..<warmup { _ = try await actor.call(call) }
        var h = RPCBenchmark.histogram()
        for _ in 0..<calls {
            let began = ContinuousClock.now
            _ = try await actor.call(call)
            _ = h.record(RPCBenchmark.nanoseconds(ContinuousClock.now - began))
        }
        return h
    }

    private static func histogram() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000_000, numberOfSignificantValueDigits: .three)
    }

    private static func nanoseconds(_ d: Duration) -> UInt64 {
        let (s, atto) = d.components
        return UInt64(max(0, s * 1_000_000_000 + atto / 1_000_000_000))
    }

    private static func row(_ what: String, _ h: Histogram<UInt64>) -> String {
        func cell(_ s: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
        let name = what + String(repeating: " ", count: max(0, 34 - what.count))
        return name + cell(String(h.totalCount), 10)
            + cell(time(h.valueAtPercentile(50)), 10) + cell(time(h.valueAtPercentile(99)), 10)
            + cell(time(h.valueAtPercentile(99.9)), 10) + cell(time(h.max), 10)
    }

    private static func time(_ ns: UInt64) -> String {
        if ns >= 10_000_000 { return "\(ns / 1_000_000) ms" }
        if ns >= 10_000 { return "\(ns / 1_000) µs" }
        let tenths = (ns + 50) / 100
        return "\(tenths / 10).\(tenths % 10) µs"
    }
}

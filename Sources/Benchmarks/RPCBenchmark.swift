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

    public init() {}

    public func run() async throws {
        guard calls >= 1, warmup >= 0, spawns >= 1 else {
            throw BenchmarkError("--calls and --spawns must be >= 1, --warmup >= 0")
        }
        // The echo actor is not in the production worker registry: its workers are told to add it.
        var options = ClusterOptions()
        options.workerArguments = DiagnosticActors.workerArguments
        options.controlPlane = transport
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
            await cluster.shutdown()

            print("what                                   count       p50       p99     p99.9       max")
            print(RPCBenchmark.row("worker start (spawn -> ready)", start))
            print(RPCBenchmark.row("empty call, built-in Ping", ping))
            print(RPCBenchmark.row("empty call, actor Noop (mailbox)", noop))
            print(RPCBenchmark.row("actor Echo, 1 KiB string", echo))
        } catch {
            await cluster.shutdown()
            throw error
        }
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

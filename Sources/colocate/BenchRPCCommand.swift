import ArgumentParser
import Cluster
import Histogram

/// `colocate bench rpc`: the latency of an empty actor call and the time from spawn to a ready worker.
struct BenchRPC: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rpc",
        abstract: "Measure actor call round trips (p50/p99) and worker start time (spawn -> ready).")

    @Option(help: "Round trips measured per call kind.")
    var calls: Int = 20_000

    @Option(help: "Round trips before measuring.")
    var warmup: Int = 2_000

    @Option(help: "Workers started (and stopped) to measure start time.")
    var spawns: Int = 20

    func validate() throws {
        guard calls >= 1, warmup >= 0, spawns >= 1 else {
            throw ValidationError("--calls and --spawns must be >= 1, --warmup >= 0")
        }
    }

    func run() async throws {
        let cluster = try Cluster.local(devices: .cpu(count: 1))
        do {
            var start = BenchRPC.histogram()
            for _ in 0..<spawns {
                let began = ContinuousClock.now
                let actor = try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config())
                _ = start.record(BenchRPC.nanoseconds(ContinuousClock.now - began))
                await actor.stop()
            }
            let actor = try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config(), name: "bench")
            let ping = try await measure(Ping(), on: actor)
            let noop = try await measure(Noop(), on: actor)
            let echo = try await measure(Echo(String(repeating: "x", count: 1024)), on: actor)
            await cluster.shutdown()

            print("what                                   count       p50       p99     p99.9       max")
            print(BenchRPC.row("worker start (spawn -> ready)", start))
            print(BenchRPC.row("empty call, built-in Ping", ping))
            print(BenchRPC.row("empty call, actor Noop (mailbox)", noop))
            print(BenchRPC.row("actor Echo, 1 KiB string", echo))
        } catch {
            await cluster.shutdown()
            throw error
        }
    }

    private func measure<C: RemoteCall>(_ call: C, on actor: ActorRef) async throws -> Histogram<UInt64> {
        for _ in 0..<warmup { _ = try await actor.call(call) }
        var h = BenchRPC.histogram()
        for _ in 0..<calls {
            let began = ContinuousClock.now
            _ = try await actor.call(call)
            _ = h.record(BenchRPC.nanoseconds(ContinuousClock.now - began))
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

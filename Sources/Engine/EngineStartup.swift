import Compute

/// When an engine rank reached each stage of its start, in `monotonicNanoseconds()` — one clock for all
/// the processes of a host, so the driver can set them beside its own times (ranks on other hosts, under
/// Ray, have other clocks: compare only their differences).
public struct RankStartup: Codable, Sendable, Equatable {
    /// The rank's actor began to initialise: its process runs and is connected to the driver.
    public var initStarted: UInt64
    /// Its device's backend is ready (on a GPU: the CUDA context).
    public var deviceReady: UInt64
    /// Its shard of the weights is loaded.
    public var weightsLoaded: UInt64
    /// Its KV cache and generator exist: it can generate.
    public var ready: UInt64

    public init(initStarted: UInt64, deviceReady: UInt64, weightsLoaded: UInt64, ready: UInt64) {
        self.initStarted = initStarted
        self.deviceReady = deviceReady
        self.weightsLoaded = weightsLoaded
        self.ready = ready
    }
}

/// Where the time of `LLM(…)` went, from the call to its return, following the rank that was ready last
/// (ranks start side by side): the phases add up to `total`.
public struct EngineStartupBreakdown: Sendable, Equatable {
    /// From `LLM(…)` called to its starting the worker processes: the config and tokenizer read, the
    /// all-reduce set up.
    public var driver: Double
    /// From then to the slowest rank's actor starting to initialise: its worker process started and
    /// connected to the driver.
    public var processes: Double
    /// The device's backend ready (CUDA context, or the CPU backend).
    public var device: Double
    /// Weights read from the checkpoint into the rank's buffer.
    public var weights: Double
    /// The workspace and KV cache allocated, the generator made.
    public var cache: Double
    /// From the rank ready to `LLM(…)` returning (the reply, and the other ranks' replies).
    public var reply: Double
    /// From `LLM(…)` called to its return.
    public var total: Double

    /// The breakdown of an engine called at `calledAt`, starting its worker processes at `spawnedAt` and
    /// returning at `returnedAt` (driver clock, `monotonicNanoseconds()`), from its ranks' reports; nil
    /// without reports.
    public init?(calledAt: UInt64, spawnedAt: UInt64, returnedAt: UInt64, ranks: [RankStartup]) {
        guard let last = ranks.max(by: { $0.ready < $1.ready }) else { return nil }
        func seconds(_ from: UInt64, _ to: UInt64) -> Double { to >= from ? Double(to - from) * 1e-9 : -Double(from - to) * 1e-9 }
        driver = seconds(calledAt, spawnedAt)
        processes = seconds(spawnedAt, last.initStarted)
        device = seconds(last.initStarted, last.deviceReady)
        weights = seconds(last.deviceReady, last.weightsLoaded)
        cache = seconds(last.weightsLoaded, last.ready)
        reply = seconds(last.ready, returnedAt)
        total = seconds(calledAt, returnedAt)
    }

    /// One line: `1.234 s = config and tokenizer read 0.100 + worker processes started 0.300 + device ready …`.
    public var summary: String {
        func f(_ s: Double) -> String { String(format: "%.3f", s) }
        return "\(f(total)) s = config and tokenizer read \(f(driver)) + worker processes started \(f(processes)) + device ready \(f(device)) + weights loaded \(f(weights)) + KV cache \(f(cache)) + reply \(f(reply))"
    }
}

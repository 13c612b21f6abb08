import Engine
import Testing

/// The cold-start breakdown follows the rank that was ready last, and its phases add up to the total.
@Suite struct EngineStartupTests {
    @Test func phasesFollowTheLastRankAndAddUp() throws {
        let ms: UInt64 = 1_000_000
        let early = RankStartup(initStarted: 100 * ms, deviceReady: 150 * ms, weightsLoaded: 300 * ms, ready: 310 * ms)
        let late = RankStartup(initStarted: 120 * ms, deviceReady: 400 * ms, weightsLoaded: 700 * ms, ready: 750 * ms)
        let b = try #require(EngineStartupBreakdown(calledAt: 10 * ms, spawnedAt: 30 * ms, returnedAt: 760 * ms, ranks: [late, early]))
        #expect(abs(b.driver - 0.020) < 1e-9 && abs(b.processes - 0.090) < 1e-9 && abs(b.device - 0.280) < 1e-9)
        #expect(abs(b.weights - 0.300) < 1e-9 && abs(b.cache - 0.050) < 1e-9 && abs(b.reply - 0.010) < 1e-9)
        let sum: Double = [b.driver, b.processes, b.device, b.weights, b.cache, b.reply].reduce(0, +)
        #expect(abs(sum - b.total) < 1e-9 && abs(b.total - 0.750) < 1e-9)
        #expect(b.summary.hasPrefix("0.750 s = config and tokenizer read 0.020 + worker processes started 0.090"))
        #expect(EngineStartupBreakdown(calledAt: 0, spawnedAt: 0, returnedAt: 1, ranks: []) == nil)
    }
}

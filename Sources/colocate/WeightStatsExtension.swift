import Cluster
import Engine

/// Per-rank statistics of the engine's weights: a worker extension registered by this executable
/// (not built into the engine), the way a user adds their own `worker_extension_cls`.
struct WeightStats: RemoteCall {
    struct Reply: Codable, Sendable {
        var rank: Int
        var tensors: Int
        var absoluteSum: Double
    }
    static let name = "stats.weightStats"
}

struct WeightStatsExtension: WorkerExtension {
    static let name = "stats"
    let worker: EngineWorkerState

    init(worker: EngineWorkerState) { self.worker = worker }

    func handlers(into handlers: inout Handlers) {
        let w = worker
        handlers.on(WeightStats.self) { _, _ in
            let sum = w.weights.values.reduce(0.0) { acc, t in acc + t.floats().reduce(0.0) { $0 + Double(abs($1)) } }
            return .init(rank: w.rank, tensors: w.weights.count, absoluteSum: sum)
        }
    }
}

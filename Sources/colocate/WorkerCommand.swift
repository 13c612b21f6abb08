import ArgumentParser
import Cluster
import Engine
import Training

/// `colocate worker`: hosts one actor for a cluster driver. Drivers start it; it is not run by hand.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Host one actor for a cluster driver (started by the driver, not by hand).",
        shouldDisplay: false)

    /// Every actor type a worker can host. Register new actor types here.
    static var registry: ActorRegistry {
        var registry = ActorRegistry()
        registry.register(EchoActor.self)
        registry.register(TrainerActor.self)
        registry.register(EngineWorker.self)
        return registry
    }

    func run() async throws {
        WorkerExtensions.register(WeightStatsExtension.self)
        await WorkerRuntime.run(registry: WorkerCommand.registry)
    }
}

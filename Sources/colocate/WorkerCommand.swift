import ArgumentParser
import Cluster
import Diagnostics
import Engine
import Training

/// `colocate worker`: hosts one actor for a cluster driver. Drivers start it; it is not run by hand.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Host one actor for a cluster driver (started by the driver, not by hand).",
        shouldDisplay: false)

    /// Also host the test and benchmark actors (`DiagnosticActors`): for tests and `bench rpc`.
    @Flag(help: .hidden)
    var diagnosticActors = false

    /// Every actor type a production worker can host. Register new actor types here.
    static var registry: ActorRegistry {
        var registry = ActorRegistry()
        registry.register(TrainerActor.self)
        registry.register(EngineWorker.self)
        return registry
    }

    func run() async throws {
        WorkerExtensions.register(WeightStatsExtension.self)
        var registry = WorkerCommand.registry
        if diagnosticActors { DiagnosticActors.register(into: &registry) }
        await WorkerRuntime.run(registry: registry)
    }
}

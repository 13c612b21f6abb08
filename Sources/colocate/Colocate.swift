import ArgumentParser

@main
struct Colocate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "colocate",
        abstract: "Colocated LLM rollout engines and RL trainers with in-place weight sync.",
        subcommands: [WorkerCommand.self, PlanCommand.self, BenchRPC.self])
}

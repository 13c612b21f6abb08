import ArgumentParser

@main
struct Colocate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "colocate",
        abstract: "Colocated LLM rollout engines and RL trainers with in-place weight sync.",
        subcommands: [
            Demo.self, Generate.self, Logits.self, InitModel.self, Tokenize.self, Detokenize.self,
            PlanCommand.self, Bench.self, WorkerCommand.self, CUDACheckCommand.self,
        ])
}

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (run them in release: swift run -c release colocate bench …).",
        subcommands: [BenchSync.self, BenchSyncIPC.self, BenchCopy.self, BenchDecode.self, BenchMatmul.self, BenchRPC.self])
}

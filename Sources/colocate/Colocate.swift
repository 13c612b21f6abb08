import ArgumentParser

@main
struct Colocate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "colocate",
        abstract: "Colocated LLM rollout engines and RL trainers with in-place weight sync.",
        subcommands: [
            BenchMatmulTopLevel.self,
        ])
}

/// Temporary top-level `colocate bench-matmul`, until `BenchMatmul` moves under `colocate bench`.
struct BenchMatmulTopLevel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-matmul", abstract: BenchMatmul.configuration.abstract)

    @OptionGroup var command: BenchMatmul

    func run() throws { try command.run() }
}

import ArgumentParser

@main
struct Colocate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "colocate",
        abstract: "Colocated LLM rollout engines and RL trainers with in-place weight sync.",
        subcommands: [
            Generate.self, Logits.self, InitModel.self, Tokenize.self, Detokenize.self,
            CUDACheckCommand.self,
        ])
}

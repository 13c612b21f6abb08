import ArgumentParser
import CShims

@main
struct Colocate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "colocate",
        abstract: "Colocated LLM rollout engines and RL trainers with in-place weight sync.",
        subcommands: [
            Demo.self, Generate.self, Chat.self, Logits.self, Grads.self, InitModel.self, Tokenize.self, Detokenize.self, Train.self,
            RLCommand.self, RLData.self,
            PlanCommand.self, Bench.self, WorkerCommand.self, CUDACheckCommand.self,
        ])

    static func main() async {
        // Line-buffered even into a file or pipe: a log shows every line printed before a kill or a crash.
        cshim_line_buffer_stdout()
        await main(nil)
    }
}

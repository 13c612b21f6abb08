import Collectives
import ArgumentParser
import Diagnostics

/// `colocate cuda-check`: flags only; the checks are `Diagnostics.CUDACheck`. Exits non-zero when a
/// check fails.
struct CUDACheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cuda-check",
        abstract: "Check the CUDA backend on this machine's GPUs (parity, throughput, IPC, NCCL).",
        shouldDisplay: false)

    @Option(help: "Ordinal of the device to check.")
    var device = 0

    @Option(help: "Bytes moved by the copy-bandwidth and IPC checks.")
    var bytes = 1 << 30

    @Flag(help: "Only the parity checks: no throughput, bandwidth, IPC or NCCL.")
    var parityOnly = false

    @Option(help: "Fixtures directory (opt-tiny, llama-tiny, qwen2-tiny with golden.safetensors): check only the models on the GPU against transformers and the CPU.")
    var models: String?

    @Flag(help: .hidden)
    var ipcChild = false

    func run() async throws {
        if ipcChild {
            try CUDACheck.runIPCChild()
            return
        }
        var check = CUDACheck()
        check.device = device
        check.bytes = bytes
        check.parityOnly = parityOnly
        check.models = models
        let status = try await check.run()
        if status != 0 { throw ExitCode(status) }
    }
}

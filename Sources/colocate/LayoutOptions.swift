import ArgumentParser

/// The seed layout's flags, shared by `plan` and `demo`: which devices, the engines' tensor-parallel
/// size, and the device shares of trainers and engine ranks.
struct LayoutOptions: ParsableArguments {
    @Option(help: "Devices: cpu:N or cpu:N:SIZE (virtual CPU devices, e.g. cpu:4:2GiB; default cpu:4), or cuda (every visible GPU; the default with --device cuda).")
    var devices: String?

    @Option(name: .customLong("tp"), help: "Tensor-parallel size of each engine.")
    var tensorParallelSize: Int = 2

    @Option(help: "Share of its device each trainer takes (0 < f <= 1).")
    var trainerFraction: Double = 0.4

    @Option(help: "Share of its device each engine rank takes (0 < f <= 1; VLLM_RAY_PER_WORKER_GPUS).")
    var workerFraction: Double = 0.4
}

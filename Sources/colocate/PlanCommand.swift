import ArgumentParser
import Cluster

/// `colocate plan`: the seed's colocated layout for a device set, or the reason it cannot work.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Print the colocated trainer/engine layout (bundle -> device -> actors and shares).")

    @Option(help: "Devices: cpu:N, cpu:N:SIZE (e.g. cpu:4:2GiB) or cuda.")
    var devices: String = "cpu:4"

    @Option(name: .customLong("tp"), help: "Tensor-parallel size of each engine.")
    var tensorParallelSize: Int = 2

    @Option(help: "Share of its device each trainer takes (0 < f <= 1).")
    var trainerFraction: Double = 0.4

    @Option(help: "Share of its device each engine rank takes (0 < f <= 1).")
    var workerFraction: Double = 0.4

    @Option(help: "Number of engines (default: as many as the devices hold).")
    var engines: Int?

    func run() throws {
        let spec = try DeviceSpec(parsing: devices)
        let layout = try ColocatedLayout(
            devices: try spec.devices(), tensorParallelSize: tensorParallelSize,
            trainerFraction: trainerFraction, workerFraction: workerFraction, engineCount: engines)
        print(layout.table())
    }
}

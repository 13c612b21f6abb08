import ArgumentParser
import Cluster
import Colocation

/// `colocate plan`: the seed's colocated layout for a device set, or the reason it cannot work.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Print the colocated trainer/engine layout (bundle -> device -> actors and shares).")

    @OptionGroup var layout: LayoutOptions

    @Option(help: "Number of engines (default: as many as the devices hold).")
    var engines: Int?

    func run() throws {
        let spec = try DeviceSpec(parsing: layout.devices ?? "cpu:4")
        let plan = try ColocatedLayout(
            devices: try spec.devices(), tensorParallelSize: layout.tensorParallelSize,
            trainerFraction: layout.trainerFraction, workerFraction: layout.workerFraction, engineCount: engines)
        print(plan.table())
    }
}

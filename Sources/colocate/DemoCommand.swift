import ArgumentParser
import Cluster
import Foundation
import Models

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run vLLM's rlhf_colocate scenario: colocated trainers and TP engines, weights synced in place.")

    @OptionGroup var layout: LayoutOptions
    @Option(help: "Fraction of device memory an engine rank may use (gpu_memory_utilization).")
    var memoryUtilization: Double = 0.4
    @Option(help: "Model directory (default: the opt-125m preset, created once in ~/.cache/colocate).")
    var model: String?
    @Option(help: "Preset used when no --model is given.")
    var preset: String = "opt-125m"
    @Option(help: "Prompt the engines complete before and after the sync.")
    var prompt: String = "Hello, my name is"
    @Option(help: "New tokens per generation.")
    var maxTokens: Int = 8
    @Option(help: "Engine weight dtype (trainers keep f32): f32, bf16 or f16.")
    var engineDtype: String = "f32"
    @Option(help: "Device kind: cpu or cuda.")
    var device: String = "cpu"
    @Option(help: "How weights reach the engines: pull (each engine rank reads its trainer's export, as the seed does) or push (each trainer writes the engine ranks on its device).")
    var sync: String = "pull"
    @Flag(help: "Print a machine-readable report.")
    var json = false
    @Option(help: ClusterChoice.help)
    var cluster: String = "local"

    func run() async throws {
        guard device == "cpu" || device == "cuda" else { throw CLIError("unknown device '\(device)' (use cpu or cuda)") }
        guard sync == "pull" || sync == "push" else { throw CLIError("--sync must be pull or push, not '\(sync)'") }
        let rayAddress = try ClusterChoice(parsing: cluster).rayAddress
        let spec = try DeviceSpec(parsing: layout.devices ?? (device == "cuda" ? "cuda" : "cpu:4"))
        switch (device, spec) {
        case ("cuda", .cpu): throw CLIError("--device cuda runs on GPUs; --devices \(layout.devices ?? "") names CPU devices")
        case ("cpu", .cuda): throw CLIError("--devices cuda needs --device cuda")
        default: break
        }
        let log: (String) -> Void = json ? { FileHandle.standardError.write(Data(($0 + "\n").utf8)) } : { print($0) }
        let directory = try model ?? ModelCache.ensure(preset: preset, log: log)
        guard FileManager.default.fileExists(atPath: directory + "/tokenizer.json") else {
            throw CLIError("\(directory) has no tokenizer.json, which the demo needs to encode its prompt (colocate init-model writes one)")
        }
        let scenario = DemoScenario(options: .init(
            devices: spec, tensorParallelSize: layout.tensorParallelSize, trainerFraction: layout.trainerFraction,
            workerFraction: layout.workerFraction, memoryUtilization: memoryUtilization, model: directory, prompt: prompt,
            maxTokens: maxTokens, engineDType: try CLIParse.dtype(engineDtype), workerExecutable: nil,
            push: sync == "push", rayAddress: rayAddress), log: log)
        let start = ContinuousClock.now
        let report = try await scenario.run()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print("PASS: colocated weight sync verified on \(report.devices.count) device\(report.devices.count == 1 ? "" : "s") in \(ContinuousClock.now - start)")
        }
    }
}

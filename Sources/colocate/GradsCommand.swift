import ArgumentParser
import Compute
import Foundation
import Models
import Training

struct Grads: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss and gradients of every parameter for int64 input_ids [B,T] (mean next-token cross-entropy, as transformers with labels=input_ids).")

    @Option(help: "Model directory.")
    var model: String
    @Option(help: "Input safetensors with int64 `input_ids` [batch, tokens].")
    var input: String
    @Option(help: "Output safetensors; receives f32 `loss` [1] and `grad.<parameter>` for every stored parameter.")
    var output: String
    @Option(help: "Device: cpu or cuda.")
    var device: String = "cpu"
    @Flag(help: "Recompute each layer's activations during the backward instead of keeping them.")
    var recompute = false
    @Option(help: "Rows of logits the lm_head computes at a time.")
    var logitChunkRows: Int = 1024

    func run() async throws {
        let backend = try Backends.make(device: device)
        // Written against the op set, not a device: any backend that conforms to TrainingOps trains.
        guard let training = backend as? any TrainingOps else {
            throw CLIError("training on \(backend.device.kind) is not in this build")
        }
        let batch = try TokenBatch.readInputIDs(input)
        let config = try ModelConfig.load(directory: model)
        let table = ParameterTable(config: config)
        var gradients: [String: Tensor] = [:]
        for spec in table.specs { gradients[spec.name] = try training.zeros(spec.shape, dtype: .f32) }
        let (_, weights) = try ModelLoader.load(directory: model, dtype: .f32, backend: training) { _, shape, dtype in
            try training.zeros(shape, dtype: dtype)
        }
        let trainer = try TrainingModel(config: config, weights: weights, gradients: gradients, backend: training,
                                        recomputeActivations: recompute, logitChunkRows: logitChunkRows)
        let loss = try trainer.forwardBackward(batch, objective: CrossEntropyObjective.mean(batch: batch))
        var tensors: [(name: String, tensor: Tensor)] = [(name: "loss", tensor: Tensor([Float(loss)], shape: [1]))]
        for spec in table.specs {
            tensors.append((name: "grad." + spec.name, tensor: try training.download(gradients[spec.name]!)))
        }
        try SafeTensorsWriter.write(tensors, to: output)
    }
}

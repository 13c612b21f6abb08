import Compute
import Foundation
import Models
import Synchronization
import Testing
@testable import Training

/// Hugging Face golden data in `shared/fixtures`: `$COLOCATE_FIXTURES`, else a `shared/fixtures`
/// inside or beside any folder above this file.
func trainLoopFixtures(filePath: String = #filePath) throws -> String {
    struct Missing: Error, CustomStringConvertible {
        var description: String { "shared/fixtures not found: set COLOCATE_FIXTURES or put shared/ beside the repository" }
    }
    let fm = FileManager.default
    if let env = ProcessInfo.processInfo.environment["COLOCATE_FIXTURES"], fm.fileExists(atPath: env) { return env }
    var dir = URL(fileURLWithPath: filePath).deletingLastPathComponent()
    while dir.path != "/" {
        for candidate in [dir.appendingPathComponent("shared/fixtures"),
                          dir.deletingLastPathComponent().appendingPathComponent("shared/fixtures")]
        where fm.fileExists(atPath: candidate.path) {
            return candidate.standardizedFileURL.path
        }
        dir = dir.deletingLastPathComponent()
    }
    throw Missing()
}

/// A fresh temporary directory.
func trainLoopTemporary() throws -> String {
    let dir = NSTemporaryDirectory() + "colocate-train-loop-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// A random model of `preset` with a tokenizer, made once per run.
func trainLoopModel(_ preset: String) throws -> String {
    try trainLoopMadeModels.withLock { made in
        let dir = NSTemporaryDirectory() + "colocate-train-loop-models-\(getpid())/\(preset)"
        if !made.contains(preset) {
            try ModelDirectory.write(preset: ModelPreset.named(preset), to: dir, seed: 7)
            made.insert(preset)
        }
        return dir
    }
}
let trainLoopMadeModels = Mutex<Set<String>>([])

/// The golden run's rows as training data: int64 input_ids [12, 32] of `train_golden.safetensors`.
func goldenData(_ model: String) throws -> (TrainingData, SafeTensorsFile) {
    let golden = try SafeTensorsFile(path: model + "/train_golden.safetensors")
    let t = try golden.tensor("input_ids")
    let ids = UnsafeBufferPointer(start: t.rawPointer.assumingMemoryBound(to: Int64.self), count: t.count).map { Int32($0) }
    return (TrainingData(ids: ids, rows: t.shape[0], sequence: t.shape[1]), golden)
}

/// The golden run's optimizer: lr 3e-3 constant, betas 0.9/0.95, eps 1e-8, weight decay 0.1, clip 1.0.
let goldenHyper = AdamWHyperparameters(learningRate: 3e-3, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)

func makeSession(_ directory: String, hyper: AdamWHyperparameters = goldenHyper, maxGradNorm: Float? = 1.0) throws -> TrainerSession {
    let weights = try TrainerWeights(directory: directory, device: .host)
    return try TrainerSession(weights: weights, hyper: hyper, schedule: .constant(hyper.learningRate), maxGradNorm: maxGradNorm)
}

/// One step of `session` on `rows` of `data`, split into `accumulation` micro-batches.
@discardableResult
func trainStep(_ session: TrainerSession, _ data: TrainingData, rows: [Int], accumulation: Int = 1) throws -> StepStats {
    let micro = try MicroBatch.split(data, rows: rows, ranks: 1, accumulation: accumulation)[0]
    return try session.step(microBatches: micro.map { ($0.batch, CrossEntropyObjective(weights: $0.weights)) })
}

/// The session's weights, by name, as host floats.
func hostWeights(_ session: TrainerSession) throws -> [String: [Float]] {
    var out: [String: [Float]] = [:]
    for (name, t) in session.weights.buffer.tensors { out[name] = t.floats() }
    return out
}

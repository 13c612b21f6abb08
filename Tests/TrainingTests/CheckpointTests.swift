import Compute
import Foundation
import Models
import Testing
import WeightSync
@testable import Training

@Suite struct TrainingCheckpointTests {
    func save(_ model: String, to out: String, fill: Float, step: Int) throws {
        let config = try ModelConfig.load(directory: model)
        let layout = WeightLayout(table: ParameterTable(config: config), dtype: .f32)
        let n = layout.totalBytes / 4
        let w = Tensor([Float](repeating: fill, count: n), shape: [n])
        let m = Tensor([Float](repeating: fill / 2, count: n), shape: [n])
        let v = Tensor([Float](repeating: fill / 4, count: n), shape: [n])
        let state = TrainerState(step: step, schedule: .constant(1e-3), hyper: AdamWHyperparameters(learningRate: 1e-3),
                                 maxGradNorm: 1, dataPosition: step * 4, batchSize: 4, gradientAccumulation: 1,
                                 shuffle: false, seed: 0, model: ModelFingerprint(config: config))
        try Checkpoint.save(to: out, modelDirectory: model, layout: layout, weights: w, m: m, v: v, state: state)
    }

    @Test func checkpointIsAnHFDirectoryAndReplacesTheOldOneWhole() throws {
        let model = try trainLoopModel("llama-tiny")
        let out = try trainLoopTemporary() + "/ckpt"
        try save(model, to: out, fill: 1, step: 1)
        try save(model, to: out, fill: 2, step: 2)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: out))
        #expect(files.isSuperset(of: ["config.json", "model.safetensors", "tokenizer.json", "optimizer.safetensors", "trainer_state.json"]))
        // No temporary sibling is left behind.
        let siblings = try FileManager.default.contentsOfDirectory(atPath: (out as NSString).deletingLastPathComponent)
        #expect(siblings == ["ckpt"])
        let config = try ModelConfig.load(directory: model)
        #expect(try Checkpoint.state(of: out, for: config).step == 2)
        // Loadable as a model: every stored parameter, f32, tied embedding once.
        let file = try SafeTensorsFile(path: out + "/model.safetensors")
        #expect(Set(file.tensorNames) == Set(ParameterTable(config: config).names))
        #expect(try file.tensor("model.norm.weight").floats().allSatisfy { $0 == 2 })
        let (m, _) = try Checkpoint.loadMoments(from: out, layout: WeightLayout(table: ParameterTable(config: config), dtype: .f32))
        #expect(m.floats().first == 1)
        _ = try LocalModel(directory: out, backend: CPUBackend())
    }

    @Test func aFailedSaveLeavesThePreviousCheckpoint() throws {
        let model = try trainLoopModel("opt-tiny")
        let root = try trainLoopTemporary()
        let out = root + "/ckpt"
        try save(model, to: out, fill: 1, step: 1)
        let before = try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors"))
        // The model directory lacks what a save needs? No: make the save itself fail by pointing it at
        // a checkpoint path whose parent is a file.
        FileManager.default.createFile(atPath: root + "/file", contents: Data("x".utf8))
        #expect(throws: TrainingError.self) { try save(model, to: root + "/file/ckpt", fill: 3, step: 3) }
        // A directory that is not a checkpoint is never replaced.
        try FileManager.default.createDirectory(atPath: root + "/mine", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: root + "/mine/notes.txt", contents: Data("keep".utf8))
        let m = (try? save(model, to: root + "/mine", fill: 3, step: 3)).map { "saved" } ?? "refused"
        #expect(m == "refused")
        #expect(FileManager.default.fileExists(atPath: root + "/mine/notes.txt"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")) == before)
    }

    @Test func anInterruptedSaveLeavesThePreviousCheckpointAndIsCleanedUp() throws {
        let model = try trainLoopModel("opt-tiny")
        let root = try trainLoopTemporary()
        let out = root + "/ckpt"
        try save(model, to: out, fill: 1, step: 1)
        let before = try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors"))
        // What a save killed before its rename leaves: a half-written temporary sibling of a dead process.
        let dead = root + "/.ckpt.tmp-\(Int32.max - 1)-1"
        try FileManager.default.createDirectory(atPath: dead, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dead + "/model.safetensors", contents: Data("partial".utf8))
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")) == before)
        let config = try ModelConfig.load(directory: model)
        #expect(try Checkpoint.state(of: out, for: config).step == 1)
        // The next save completes and removes the leftover.
        try save(model, to: out, fill: 2, step: 2)
        #expect(!FileManager.default.fileExists(atPath: dead))
        #expect(try Checkpoint.state(of: out, for: config).step == 2)
    }

    @Test func aCheckpointOfAnotherModelIsRefused() throws {
        let out = try trainLoopTemporary() + "/ckpt"
        try save(try trainLoopModel("opt-tiny"), to: out, fill: 1, step: 1)
        let other = try ModelConfig.load(directory: trainLoopFixtures() + "/llama-tiny")
        do {
            _ = try Checkpoint.state(of: out, for: other)
            Issue.record("a checkpoint of opt-tiny resumed llama-tiny")
        } catch {
            #expect("\(error)".contains("another model"), "\(error)")
        }
    }
}

import Compute
import Foundation
import Models
import Testing
@testable import Training

@Suite struct DataTests {
    let config: ModelConfig
    init() throws { config = try ModelConfig.load(directory: trainLoopFixtures() + "/opt-tiny") }

    func ids(_ rows: [[Int64]], to path: String, mask: [[Int64]]? = nil) throws {
        var tensors: [(name: String, tensor: Tensor)] = []
        func tensor(_ v: [[Int64]]) throws -> Tensor {
            let t = try Tensor.zeros([v.count, v.first?.count ?? 0], dtype: .i64)
            let p = t.rawPointer.assumingMemoryBound(to: Int64.self)
            for (i, x) in v.flatMap({ $0 }).enumerated() { p[i] = x }
            return t
        }
        tensors.append(("input_ids", try tensor(rows)))
        if let mask { tensors.append(("loss_mask", try tensor(mask))) }
        try SafeTensorsWriter.write(tensors, to: path)
    }

    func load(_ path: String, model: String? = nil) throws -> TrainingData {
        let dir = try model ?? trainLoopFixtures() + "/opt-tiny"
        let config = try ModelConfig.load(directory: dir)
        return try TrainingData.load(path: path, config: config) { try Tokenizer(path: dir + "/tokenizer.json") }
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body() } catch { return "\(error)" }
        return "no error"
    }

    @Test func safetensorsRowsAndMask() throws {
        let dir = try trainLoopTemporary()
        try ids([[1, 2, 3], [4, 5, 6]], to: dir + "/d.safetensors", mask: [[1, 0, 1], [1, 1, 0]])
        let d = try load(dir + "/d.safetensors")
        #expect(d.rows == 2 && d.sequence == 3)
        #expect(d.ids == [1, 2, 3, 4, 5, 6])
        #expect(d.lossMask == [0, 0, 1, 0, 1, 0])
    }

    @Test func tokenIdsOutsideTheVocabularyNameRowAndColumn() throws {
        let dir = try trainLoopTemporary()
        try ids([[1, 2, 3], [4, 512, 6]], to: dir + "/d.safetensors")
        let m = message { _ = try load(dir + "/d.safetensors") }
        #expect(m.contains("row 1, column 1") && m.contains("512"), "\(m)")
        #expect(!m.contains("\n"))
    }

    @Test func emptyFilesAreRefused() throws {
        let dir = try trainLoopTemporary()
        FileManager.default.createFile(atPath: dir + "/e.safetensors", contents: Data())
        FileManager.default.createFile(atPath: dir + "/e.jsonl", contents: Data("\n\n".utf8))
        #expect(message { _ = try load(dir + "/e.safetensors") }.contains("is empty"))
        #expect(message { _ = try load(dir + "/e.jsonl", model: try trainLoopModel("opt-tiny")) }.contains("is empty"))
    }

    @Test func sequencesLongerThanThePositionsAreRefused() throws {
        let dir = try trainLoopTemporary()
        try ids([[Int64](repeating: 3, count: 129)], to: dir + "/d.safetensors")
        let m = message { _ = try load(dir + "/d.safetensors") }
        #expect(m.contains("129 tokens") && m.contains("128 positions"), "\(m)")
    }

    @Test func jsonlTextAndPromptCompletion() throws {
        let model = try trainLoopModel("opt-tiny")
        let tokenizer = try Tokenizer(path: model + "/tokenizer.json")
        let config = try ModelConfig.load(directory: model)
        let eos = Int32(config.eosTokenIds[0])
        let dir = try trainLoopTemporary()
        try Data(#"""
        {"text": "hello world"}

        {"prompt": "say", "completion": " hi"}
        """#.utf8).write(to: URL(fileURLWithPath: dir + "/d.jsonl"))
        let d = try load(dir + "/d.jsonl", model: model)
        let text = tokenizer.encode("hello world") + [eos]
        let prompt = tokenizer.encode("say"), completion = tokenizer.encode(" hi") + [eos]
        #expect(d.rows == 2 && d.sequence == max(text.count, prompt.count + completion.count))
        let (ids0, mask0) = d.row(0), (ids1, mask1) = d.row(1)
        #expect(Array(ids0.prefix(text.count)) == text)
        #expect(Array(mask0.prefix(text.count)) == [0] + [Float](repeating: 1, count: text.count - 1))
        #expect(mask0.dropFirst(text.count).allSatisfy { $0 == 0 })
        #expect(Array(ids1.prefix(prompt.count + completion.count)) == prompt + completion)
        #expect(Array(mask1.prefix(prompt.count)).allSatisfy { $0 == 0 })
        #expect(Array(mask1.dropFirst(prompt.count).prefix(completion.count)).allSatisfy { $0 == 1 })
    }

    @Test func jsonlRowWithoutTheFieldsNamesTheLine() throws {
        let model = try trainLoopModel("opt-tiny")
        let dir = try trainLoopTemporary()
        try Data("{\"text\": \"a\"}\n{\"prompt\": \"b\"}\n".utf8).write(to: URL(fileURLWithPath: dir + "/d.jsonl"))
        let m = message { _ = try load(dir + "/d.jsonl", model: model) }
        #expect(m.contains("line 2") && m.contains("\"text\""), "\(m)")
        #expect(!m.contains("\n"))
    }
}

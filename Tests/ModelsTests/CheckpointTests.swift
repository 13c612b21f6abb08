import Compute
import Foundation
import Testing

import Models

@Suite struct CheckpointTests {
    static func weights() -> [(name: String, tensor: Tensor)] {
        (0..<5).map { i in ("layer.\(i).weight", Tensor((0..<(8 * (i + 1))).map { Float($0 + 100 * i) }, shape: [i + 1, 8])) }
    }

    @Test func singleFileRoundTrip() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try Checkpoint.write(tensors: Self.weights(), to: dir.path)
        #expect(FileManager.default.fileExists(atPath: dir.file("model.safetensors")))
        #expect(!FileManager.default.fileExists(atPath: dir.file("model.safetensors.index.json")))
        let ckpt = try Checkpoint(directory: dir.path)
        #expect(ckpt.names == Self.weights().map(\.name))
        #expect(ckpt.files.count == 1 && ckpt.files[0].metadata == ["format": "pt"])
        for (name, t) in Self.weights() {
            #expect(try ckpt.tensor(name).floats() == t.floats())
            #expect(ckpt.info(name)?.shape == t.shape)
        }
    }

    @Test func shardedRoundTrip() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        // Tensors of 32, 64, 96, 128, 160 bytes with shards of at most 128: [32 64] [96] [128] [160].
        try Checkpoint.write(tensors: Self.weights(), to: dir.path, maxShardBytes: 128)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(files == ["model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                          "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
                          "model.safetensors.index.json"])
        let index = try JSONValue.parse([UInt8](Data(contentsOf: URL(fileURLWithPath: dir.file("model.safetensors.index.json")))))
        #expect(index["metadata"]?["total_size"] == .int(480))
        #expect(index["weight_map"]?["layer.2.weight"] == .string("model-00002-of-00004.safetensors"))

        let ckpt = try Checkpoint(directory: dir.path)
        #expect(ckpt.files.count == 4)
        #expect(ckpt.names == Self.weights().map(\.name))
        for (name, t) in Self.weights() {
            #expect(try ckpt.tensor(name).floats() == t.floats())
        }
        #expect(ckpt.file(of: "layer.4.weight")?.path == dir.file("model-00004-of-00004.safetensors"))

        // Rewriting as a single file removes the index that would otherwise be stale.
        try Checkpoint.write(tensors: Array(Self.weights().prefix(1)), to: dir.path)
        #expect(try Checkpoint(directory: dir.path).names == ["layer.0.weight"])
        #expect(!FileManager.default.fileExists(atPath: dir.file("model.safetensors.index.json")))
    }

    @Test func emptyDirectoryIsAnError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect { try Checkpoint(directory: dir.path) } throws: {
            "\($0)" == "no model.safetensors or model.safetensors.index.json in \(dir.path)"
        }
    }

    private func writeIndex(_ dir: TemporaryDirectory, _ json: String) throws {
        try Data(json.utf8).write(to: URL(fileURLWithPath: dir.file("model.safetensors.index.json")))
    }

    @Test func indexNamingAMissingShardIsAnError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try writeIndex(dir, #"{"metadata": {}, "weight_map": {"w": "model-00001-of-00001.safetensors"}}"#)
        #expect { try Checkpoint(directory: dir.path) } throws: {
            ($0 as? SafeTensorsError)?.kind == .cannotOpen && "\($0)".contains("model-00001-of-00001.safetensors")
        }
    }

    @Test func indexListingATensorItsShardLacksIsAnError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try SafeTensorsWriter.write([("w", Tensor([1], shape: [1]))], to: dir.file("shard.safetensors"))
        try writeIndex(dir, #"{"weight_map": {"w": "shard.safetensors", "v": "shard.safetensors"}}"#)
        #expect { try Checkpoint(directory: dir.path) } throws: {
            "\($0)".contains("'v'") && "\($0)".contains("shard.safetensors")
        }
    }

    @Test func indexWithPathsOutsideTheDirectoryIsAnError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try writeIndex(dir, #"{"weight_map": {"w": "../elsewhere.safetensors"}}"#)
        #expect { try Checkpoint(directory: dir.path) } throws: { "\($0)".contains("not a file in the checkpoint directory") }
    }

    @Test func malformedIndexIsAnError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        for (json, message) in [("{", "not valid JSON"), ("{}", "no weight_map"), (#"{"weight_map": {"w": 3}}"#, "not a file name")] {
            try writeIndex(dir, json)
            #expect { try Checkpoint(directory: dir.path) } throws: { "\($0)".contains(message) }
        }
    }

    @Test func opensTheFixtureModels() throws {
        for (model, count) in [("opt-tiny", 36), ("llama-tiny", 21), ("qwen2-tiny", 26)] {
            let ckpt = try Checkpoint(directory: Fixtures.path(model))
            #expect(ckpt.names.count == count)
            #expect(try ckpt.tensor(ckpt.names[0]).dtype == .f32)
        }
    }
}

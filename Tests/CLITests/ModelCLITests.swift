import Foundation
import Testing

/// `generate`, `logits` and `init-model` as a user runs them: the built binary, its output, its exit status.
@Suite struct ModelCLITests {
    func temporary() throws -> String {
        let dir = NSTemporaryDirectory() + "colocate-cli-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func generateGreedyJSONMatchesGoldenTokens() throws {
        let model = try colocateFixtures() + "/llama-tiny"
        // The fixture's golden prompt and greedy continuation (transformers 5.17).
        let r = try runColocate(["generate", "--model", model, "--prompt-ids", "338,173,408,135,163,277,433,109",
                                 "--max-tokens", "16", "--temperature", "0", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let outputs = try #require(json["outputs"] as? [[String: Any]])
        #expect(outputs.count == 1)
        #expect(outputs[0]["ids"] as? [Int] == [142, 446, 454, 276, 386, 206, 454, 276, 386, 206, 454, 276, 386, 216, 429, 466])
        #expect((outputs[0]["logprobs"] as? [Double])?.count == 16)
    }

    @Test func initModelThenGenerateTextWithSeedIsReproducible() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/opt"
        let made = try runColocate(["init-model", "--arch", "opt", "--preset", "opt-tiny", "--out", out, "--seed", "3"])
        #expect(made.status == 0, "\(made.stderr)")
        for file in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + file))
        }
        let args = ["generate", "--model", out, "--prompt", "Hello, my name is", "--max-tokens", "6",
                    "--seed", "11", "--n", "2", "--ignore-eos", "--json"]
        let a = try runColocate(args), b = try runColocate(args)
        #expect(a.status == 0, "\(a.stderr)")
        #expect(a.stdout == b.stdout)
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(a.stdout.utf8)) as? [String: Any])
        let outputs = try #require(reply["outputs"] as? [[String: Any]])
        #expect(outputs.count == 2)
        #expect(outputs.allSatisfy { ($0["text"] as? String) != nil && ($0["ids"] as? [Int])?.count == 6 })
    }

    @Test func logitsCommandWritesGoldenShapedLogits() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixtures = try colocateFixtures()
        let r = try runColocate(["logits", "--model", fixtures + "/opt-tiny", "--input", fixtures + "/opt-tiny/golden.safetensors",
                                 "--output", dir + "/logits.safetensors"])
        #expect(r.status == 0, "\(r.stderr)")
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/logits.safetensors"))
        let headerLength = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let header = try #require(try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + Int(headerLength)))) as? [String: Any])
        let logits = try #require(header["logits"] as? [String: Any])
        #expect(logits["dtype"] as? String == "F32")
        #expect(logits["shape"] as? [Int] == [2, 24, 512])
    }

    static let userErrors: [(args: [String], message: String)] = [
        (["generate", "--model", "/nonexistent", "--prompt-ids", "1"], "not a model directory"),
        (["generate", "--model", "FIXTURE/llama-tiny", "--prompt-ids", "1,99999"], "outside the vocabulary"),
        (["generate", "--model", "FIXTURE/llama-tiny", "--prompt-ids", "1,x"], "not a token id"),
        (["generate", "--model", "FIXTURE/llama-tiny", "--prompt", "hi"], "no tokenizer.json"),
        (["generate", "--model", "FIXTURE/llama-tiny", "--prompt-ids", Array(repeating: "1", count: 200).joined(separator: ",")], "positions"),
        (["generate", "--model", "FIXTURE", "--prompt-ids", "1"], "not a model directory"),
        (["generate", "--model", "FIXTURE/llama-tiny", "--prompt-ids", "1", "--n", "4611686018427387904"], "more sequences than a KV cache"),
        (["init-model", "--arch", "gpt2", "--preset", "opt-tiny", "--out", "/tmp/x"], "unknown architecture"),
        (["init-model", "--arch", "llama", "--preset", "opt-tiny", "--out", "/tmp/x"], "is opt, not llama"),
    ]

    @Test(arguments: userErrors)
    func userErrorsAreOneLineAndNonZero(args: [String], message: String) throws {
        let fixtures = try colocateFixtures()
        let r = try runColocate(args.map { $0.replacingOccurrences(of: "FIXTURE", with: fixtures) })
        #expect(r.status != 0)
        #expect(r.stderr.contains(message), "stderr: \(r.stderr)")
        #expect(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1, "stderr: \(r.stderr)")
    }

    @Test func hugeMaxTokensStopsAtTheModelsPositions() throws {
        let r = try runColocate(["generate", "--model", try colocateFixtures() + "/llama-tiny", "--prompt-ids", "2,5",
                                 "--max-tokens", "9223372036854775807", "--temperature", "0", "--ignore-eos", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let outputs = try #require(reply["outputs"] as? [[String: Any]])
        #expect((outputs[0]["ids"] as? [Int])?.count == 128 - 2, "prompt + new tokens fill the 128 positions")
        #expect(outputs[0]["finish_reason"] as? String == "length")
    }

    @Test func modelDirectoryWithoutWeightsIsAClearError() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: try colocateFixtures() + "/opt-tiny/config.json", toPath: dir + "/config.json")
        let r = try runColocate(["generate", "--model", dir, "--prompt-ids", "1,2"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("model.safetensors"), "stderr: \(r.stderr)")
    }
}

extension ModelCLITests {
    /// Arguments are bytes; a prompt that is not UTF-8 is refused, not silently repaired.
    @Test func nonUTF8PromptIsRefused() throws {
        let model = try colocateFixtures() + "/llama-tiny"
        let script = "exec \"$0\" generate --model \"$1\" --prompt \"$(printf 'caf\\351')\""
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script, colocateBinary().path, model]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus != 0)
        #expect(stderr.contains("not valid UTF-8"), "stderr: \(stderr)")
    }
}

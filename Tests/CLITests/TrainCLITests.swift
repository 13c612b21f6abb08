import Compute
import Foundation
import Models
import Testing

/// `colocate train` as a user runs it: the built binary, real trainer worker processes on virtual CPU
/// devices, checkpoints on disk.
@Suite(.serialized) struct TrainCLITests {
    /// The golden run's settings (`train_golden.safetensors`).
    static let goldenFlags = ["--batch-size", "4", "--lr", "3e-3", "--betas", "0.9,0.95", "--eps", "1e-8",
                              "--weight-decay", "0.1", "--max-grad-norm", "1.0", "--schedule", "constant"]

    func temporary() throws -> String {
        let dir = NSTemporaryDirectory() + "colocate-train-cli-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Writes int64 `input_ids` rows to a safetensors file.
    func writeIds(_ rows: [[Int64]], to path: String) throws {
        let t = try Tensor.zeros([rows.count, rows.first?.count ?? 0], dtype: .i64)
        let p = t.rawPointer.assumingMemoryBound(to: Int64.self)
        for (i, x) in rows.flatMap({ $0 }).enumerated() { p[i] = x }
        try SafeTensorsWriter.write([("input_ids", t)], to: path)
    }

    /// The golden ids of `model` as a data file.
    func goldenData(_ model: String, in dir: String) throws -> String {
        let golden = try SafeTensorsFile(path: model + "/train_golden.safetensors")
        let path = dir + "/ids.safetensors"
        try SafeTensorsWriter.write([("input_ids", try golden.tensor("input_ids"))], to: path)
        return path
    }

    func jsonLines(_ stdout: String) throws -> [[String: Any]] {
        try stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    func weights(_ checkpoint: String) throws -> [String: [Float]] {
        let file = try SafeTensorsFile(path: checkpoint + "/model.safetensors")
        var out: [String: [Float]] = [:]
        for name in file.tensorNames { out[name] = try file.tensor(name).floats() }
        return out
    }

    func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    @Test func goldenRunMatchesPyTorch() throws {
        let model = try colocateFixtures() + "/qwen2-tiny"
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try runColocate(["train", "--model", model, "--data", goldenData(model, in: dir), "--out", dir + "/out",
                                 "--steps", "3", "--json"] + Self.goldenFlags)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = try jsonLines(r.stdout)
        let golden = try SafeTensorsFile(path: model + "/train_golden.safetensors")
        let losses = try golden.tensor("loss").floats(), norms = try golden.tensor("grad_norm").floats()
        #expect(lines.count == 3)
        for (i, line) in lines.enumerated() {
            #expect(line["step"] as? Int == i + 1)
            let loss = line["loss"] as! Double, norm = line["grad_norm"] as! Double
            #expect(abs(loss - Double(losses[i])) <= 1e-4, "step \(i + 1) loss \(loss) vs \(losses[i])")
            #expect(abs(norm - Double(norms[i])) <= 1e-4 * Double(norms[i]), "step \(i + 1) grad norm \(norm) vs \(norms[i])")
            #expect(abs((line["lr"] as! Double) - 3e-3) < 1e-9)
            #expect((line["tokens_per_s"] as! Double) > 0)
        }
        let trained = try weights(dir + "/out")
        // A tied embedding is stored once, as transformers saves it.
        #expect(trained["lm_head.weight"] == nil)
        for (name, ours) in trained {
            let expected = try golden.tensor("param." + name).floats()
            let worst = zip(ours, expected).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-4, "\(name): max |Δ| \(worst)")
        }
        for file in ["config.json", "generation_config.json", "optimizer.safetensors", "trainer_state.json"] {
            #expect(FileManager.default.fileExists(atPath: dir + "/out/" + file), "\(file)")
        }
    }

    @Test func twoDataParallelTrainersEqualOne() throws {
        let model = try colocateFixtures() + "/llama-tiny"
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = try goldenData(model, in: dir)
        let common = ["train", "--model", model, "--data", data, "--steps", "3", "--json"] + Self.goldenFlags
        let one = try runColocate(common + ["--out", dir + "/dp1", "--trainers", "1"])
        let two = try runColocate(common + ["--out", dir + "/dp2", "--trainers", "2"])
        #expect(one.status == 0, "\(one.stderr)")
        #expect(two.status == 0, "\(two.stderr)")
        for (a, b) in zip(try jsonLines(one.stdout), try jsonLines(two.stdout)) {
            #expect(abs((a["loss"] as! Double) - (b["loss"] as! Double)) < 1e-5)
            #expect(abs((a["grad_norm"] as! Double) - (b["grad_norm"] as! Double)) < 1e-5 * (a["grad_norm"] as! Double))
        }
        let w1 = try weights(dir + "/dp1"), w2 = try weights(dir + "/dp2")
        #expect(Set(w1.keys) == Set(w2.keys))
        for (name, a) in w1 {
            let worst = zip(a, w2[name]!).map { abs($0 - $1) }.max() ?? 0
            #expect(worst < 1e-5, "\(name): DP 2 differs from DP 1 by \(worst)")
        }
    }

    @Test func fourStepsEqualTwoThenAResumeForTwoMore() throws {
        let model = try colocateFixtures() + "/qwen2-tiny"
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let common = ["train", "--model", model, "--data", try goldenData(model, in: dir), "--json"] + Self.goldenFlags
        let straight = try runColocate(common + ["--steps", "4", "--out", dir + "/four"])
        let first = try runColocate(common + ["--steps", "2", "--out", dir + "/two"])
        let resumed = try runColocate(common + ["--steps", "4", "--resume", dir + "/two", "--out", dir + "/resumed"])
        for r in [straight, first, resumed] { #expect(r.status == 0, "\(r.stderr)") }
        #expect(try jsonLines(resumed.stdout).map { $0["step"] as? Int } == [3, 4])
        #expect(try bytes(dir + "/resumed/model.safetensors") == bytes(dir + "/four/model.safetensors"))
        #expect(try bytes(dir + "/resumed/optimizer.safetensors") == bytes(dir + "/four/optimizer.safetensors"))
    }

    @Test func jsonlPromptCompletionTrainsAndWritesALoadableCheckpoint() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = dir + "/model"
        try ModelDirectory.write(preset: ModelPreset.named("llama-tiny"), to: model, seed: 2)
        let rows = (0..<4).map { #"{"prompt": "question \#($0)?", "completion": " answer \#($0)."}"# } + [#"{"text": "plain text row"}"#]
        try Data(rows.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: dir + "/rows.jsonl"))
        let r = try runColocate(["train", "--model", model, "--data", dir + "/rows.jsonl", "--out", dir + "/out", "--steps", "3",
                                 "--batch-size", "2", "--lr", "1e-3", "--schedule", "cosine", "--warmup-steps", "1", "--shuffle",
                                 "--seed", "4", "--grad-accum", "2", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = try jsonLines(r.stdout)
        #expect(lines.map { $0["step"] as? Int } == [1, 2, 3])
        #expect(lines.allSatisfy { ($0["loss"] as! Double).isFinite })
        // Warmup then cosine: 1e-3 at the end of warmup, decaying after.
        #expect(abs((lines[0]["lr"] as! Double) - 1e-3) < 1e-9)
        #expect((lines[2]["lr"] as! Double) < (lines[1]["lr"] as! Double))
        let g = try runColocate(["generate", "--model", dir + "/out", "--prompt-ids", "5,6,7", "--max-tokens", "3", "--temperature", "0"])
        #expect(g.status == 0, "\(g.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir + "/out/tokenizer.json"))
    }

    @Test func badFlagsAreOneLineErrors() throws {
        let model = try colocateFixtures() + "/opt-tiny"
        let base = ["train", "--model", model, "--data", model + "/train_golden.safetensors", "--out", NSTemporaryDirectory() + "unused"]
        for (args, fragment) in [(["--dtype", "bf16-mixed"], "runs on GPUs"), (["--betas", "0.9"], "--betas"),
                                 (["--batch-size", "3", "--trainers", "2"], "does not split"), (["--schedule", "linear"], "--schedule")] {
            let r = try runColocate(base + args)
            #expect(r.status != 0)
            let message = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(message.contains(fragment) && !message.contains("\n"), "\(args): \(message)")
        }
    }

    /// Every bad input fails with one line naming the problem, and the checkpoint already in --out survives.
    @Test func badInputIsOneLineAndKeepsTheCheckpoint() throws {
        let model = try colocateFixtures() + "/opt-tiny"
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/out"
        let good = try runColocate(["train", "--model", model, "--data", goldenData(model, in: dir), "--out", out, "--steps", "1",
                                    "--batch-size", "4"])
        #expect(good.status == 0, "\(good.stderr)")
        let saved = try bytes(out + "/model.safetensors")

        func expectFailure(_ args: [String], _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try runColocate(["train", "--out", out, "--steps", "3", "--batch-size", "2"] + args)
            #expect(r.status != 0, sourceLocation: sourceLocation)
            let message = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!message.contains("\n"), "not one line: \(message)", sourceLocation: sourceLocation)
            for f in fragments { #expect(message.contains(f), "\(message) lacks '\(f)'", sourceLocation: sourceLocation) }
            #expect(try bytes(out + "/model.safetensors") == saved, "the earlier checkpoint changed", sourceLocation: sourceLocation)
        }

        var rows = [[Int64]](repeating: [Int64](repeating: 5, count: 8), count: 4)
        rows[2][5] = 512
        try writeIds(rows, to: dir + "/vocab.safetensors")
        try expectFailure(["--model", model, "--data", dir + "/vocab.safetensors"], ["512", "row 2, column 5"])

        FileManager.default.createFile(atPath: dir + "/empty.safetensors", contents: Data())
        try expectFailure(["--model", model, "--data", dir + "/empty.safetensors"], ["empty"])

        try writeIds([[Int64]](repeating: [Int64](repeating: 5, count: 129), count: 2), to: dir + "/long.safetensors")
        try expectFailure(["--model", model, "--data", dir + "/long.safetensors"], ["129 tokens", "128 positions"])

        let withTokenizer = dir + "/opt-random"
        try ModelDirectory.write(preset: ModelPreset.named("opt-tiny"), to: withTokenizer, seed: 1)
        try Data("{\"text\": \"fine\"}\n{\"question\": \"no\"}\n".utf8).write(to: URL(fileURLWithPath: dir + "/rows.jsonl"))
        try expectFailure(["--model", withTokenizer, "--data", dir + "/rows.jsonl"], ["line 2", "\"text\""])

        FileManager.default.createFile(atPath: dir + "/file", contents: Data("x".utf8))
        let unwritable = try runColocate(["train", "--model", model, "--data", dir + "/ids.safetensors", "--out", dir + "/file/ckpt",
                                          "--steps", "1", "--batch-size", "4"])
        #expect(unwritable.status != 0)
        #expect(unwritable.stderr.contains("cannot write the checkpoint"), "\(unwritable.stderr)")
        #expect(!unwritable.stderr.trimmingCharacters(in: .whitespacesAndNewlines).contains("\n"))

        try expectFailure(["--model", try colocateFixtures() + "/llama-tiny", "--data", dir + "/ids.safetensors", "--resume", out],
                          ["another model"])

        // A loss that diverges: the run stops naming the step; the checkpoint of the step before survives.
        let diverging = dir + "/diverging"
        let r = try runColocate(["train", "--model", model, "--data", dir + "/ids.safetensors", "--out", diverging, "--steps", "3",
                                 "--batch-size", "4", "--lr", "1e30", "--max-grad-norm", "0", "--save-every", "1"])
        #expect(r.status != 0)
        let message = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(message.contains("step 2") && (message.contains("NaN") || message.contains("infinite")), "\(message)")
        #expect(!message.contains("\n"), "\(message)")
        let state = try JSONSerialization.jsonObject(with: bytes(diverging + "/trainer_state.json")) as! [String: Any]
        #expect(state["step"] as? Int == 1)
    }
}

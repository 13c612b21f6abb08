#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Testing

/// The hostile inputs of issue 11's probe, as a user gives them to the built binary: each ends in a
/// one-line error and a non-zero status, without waiting on a FIFO or touching what is not ours.
@Suite struct BadInputCLITests {
    func temporary() throws -> String {
        let dir = NSTemporaryDirectory() + "colocate-bad-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A failed run whose stderr is one line containing `message`.
    func expectOneLineError(_ args: [String], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try runColocate(args)
        #expect(r.status != 0, "stdout: \(r.stdout)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains(message), "stderr: \(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1, "stderr: \(r.stderr)",
                sourceLocation: sourceLocation)
        #expect(!r.stderr.contains("NSCocoaErrorDomain"), sourceLocation: sourceLocation)
    }

    /// Makes a FIFO at `path` for `body`; should the binary block opening it, a helper thread connects
    /// a writer so that the test fails on the message instead of hanging.
    func withFIFO(at path: String, _ body: () throws -> Void) throws {
        #expect(mkfifo(path, 0o644) == 0)
        let done = Atomic<Bool>(false)
        let helper = Thread {
            while !done.load(ordering: .acquiring) {
                let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                if fd >= 0 { close(fd) }
                usleep(20_000)
            }
        }
        helper.start()
        defer { done.store(true, ordering: .releasing) }
        try body()
    }

    /// A copy of the opt-tiny fixture, to break.
    func modelCopy(in dir: String) throws -> String {
        let model = dir + "/model"
        try FileManager.default.copyItem(atPath: try colocateFixtures() + "/opt-tiny", toPath: model)
        for file in try FileManager.default.contentsOfDirectory(atPath: model) {
            chmod(model + "/" + file, 0o644)
        }
        chmod(model, 0o755)
        return model
    }

    /// A safetensors file of one I64 tensor `input_ids` [rows, cols] (written here, not by the code under test).
    func writeInputIds(_ ids: [[Int64]], to path: String, trailing: Int = 0) throws {
        let shape = [ids.count, ids.first?.count ?? 0]
        var header = Array(#"{"input_ids":{"dtype":"I64","shape":[\#(shape[0]),\#(shape[1])],"data_offsets":[0,\#(8 * shape[0] * shape[1])]}}"#.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes += $0 }
        bytes += header
        for v in ids.joined() { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        bytes += [UInt8](repeating: 0, count: trailing)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    // MARK: plan

    @Test func planRefusesDeviceCountsBeyondTheMaximum() throws {
        for spec in ["cpu:4294967296", "cpu:30000"] {
            try expectOneLineError(["plan", "--devices", spec], "exceeds the maximum of 4096 virtual CPU devices")
        }
        let r = try runColocate(["plan", "--devices", "cpu:4096"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("4096 bundles") && r.stdout.contains("engine-2047: bundles 4094,4095"))
    }

    // MARK: files that are not regular files

    @Test func fifoInputsAreRefused() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try modelCopy(in: dir)
        unlink(model + "/config.json")
        try withFIFO(at: model + "/config.json") {
            try expectOneLineError(["generate", "--model", model, "--prompt-ids", "2,5"], "config.json: is a FIFO, not a regular file")
        }
        let fixture = try colocateFixtures() + "/opt-tiny"
        try withFIFO(at: dir + "/input.safetensors") {
            try expectOneLineError(["logits", "--model", fixture, "--input", dir + "/input.safetensors", "--output", dir + "/out.safetensors"],
                                   "input.safetensors: is a FIFO, not a regular file")
        }
        try withFIFO(at: dir + "/tokenizer.json") {
            try expectOneLineError(["tokenize", "--tokenizer", dir + "/tokenizer.json", "--text", "hi"], "is a FIFO, not a regular file")
        }
    }

    @Test func logitsOutputOntoALinkFIFOOrDeviceIsRefusedAndLeftAlone() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixtures = try colocateFixtures()
        let args = ["logits", "--model", fixtures + "/opt-tiny", "--input", fixtures + "/opt-tiny/golden.safetensors", "--output"]
        var st = stat()
        let target = dir + "/target"
        try Data("keep".utf8).write(to: URL(fileURLWithPath: target))
        #expect(symlink(target, dir + "/link") == 0)
        try expectOneLineError(args + [dir + "/link"], "is a symbolic link; refusing to replace it")
        #expect(lstat(dir + "/link", &st) == 0 && st.st_mode & S_IFMT == S_IFLNK)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep")

        #expect(mkfifo(dir + "/fifo", 0o644) == 0)
        try expectOneLineError(args + [dir + "/fifo"], "is a FIFO; refusing to replace it")
        #expect(lstat(dir + "/fifo", &st) == 0 && st.st_mode & S_IFMT == S_IFIFO)

        // A character device like /dev/null, made here (only root may), never /dev/null itself.
        if mknod(dir + "/null", S_IFCHR | 0o666, dev_t(1 << 8 | 3)) == 0 {
            try expectOneLineError(args + [dir + "/null"], "is a character device; refusing to replace it")
            #expect(lstat(dir + "/null", &st) == 0 && st.st_mode & S_IFMT == S_IFCHR)
        }
    }

    @Test func aWeightsFileThatIsADirectoryIsNamedAsOne() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try modelCopy(in: dir)
        unlink(model + "/model.safetensors")
        try FileManager.default.createDirectory(atPath: model + "/model.safetensors", withIntermediateDirectories: false)
        try expectOneLineError(["generate", "--model", model, "--prompt-ids", "2,5"], "model.safetensors is a directory, not a regular file")
    }

    @Test func initModelOntoAFileSaysSo() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/file"))
        try expectOneLineError(["init-model", "--arch", "opt", "--preset", "opt-tiny", "--out", dir + "/file"],
                               "exists and is not a directory")
        try expectOneLineError(["init-model", "--arch", "opt", "--preset", "opt-tiny", "--out", dir + "/file/sub"],
                               "is a regular file, not a directory")
        #expect(try String(contentsOfFile: dir + "/file", encoding: .utf8) == "x")
    }

    // MARK: garbage in the data

    @Test func nanWeightsAreReportedNotPrinted() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try modelCopy(in: dir)
        // Every weight of the final layer norm becomes NaN, in place.
        let path = model + "/model.safetensors"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as? [String: Any]
        let entry = try #require(header?["model.decoder.final_layer_norm.weight"] as? [String: Any])
        let offsets = try #require(entry["data_offsets"] as? [Int])
        for at in stride(from: 8 + headerLength + offsets[0], to: 8 + headerLength + offsets[1], by: 4) {
            bytes.replaceSubrange(at..<(at + 4), with: [0x00, 0x00, 0xC0, 0x7F])
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        for extra in [[], ["--json"], ["--temperature", "0.8", "--top-k", "5", "--seed", "1"]] {
            try expectOneLineError(["generate", "--model", model, "--prompt-ids", "2,100,200", "--max-tokens", "3"] + extra,
                                   "logits are not finite (NaN or infinity) at generation step 1 of prompt 0")
        }
        try expectOneLineError(["logits", "--model", model, "--input", try colocateFixtures() + "/opt-tiny/golden.safetensors",
                                "--output", dir + "/out.safetensors"], "logits are not finite (nan at batch row 0, position 0")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.safetensors"))
    }

    @Test func inputIdsWithTrailingBytesAreRejected() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeInputIds([[2, 5]], to: dir + "/in.safetensors", trailing: 8)
        try expectOneLineError(["logits", "--model", try colocateFixtures() + "/opt-tiny", "--input", dir + "/in.safetensors",
                                "--output", dir + "/out.safetensors"], "8 bytes after the last tensor's data")
    }

    // MARK: numbers

    @Test func outOfRangeIdsAreReportedAsGiven() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixture = try colocateFixtures() + "/opt-tiny"
        try expectOneLineError(["generate", "--model", fixture, "--prompt-ids", "2,99999999999"], "token id 99999999999 is out of range")
        try expectOneLineError(["generate", "--model", fixture, "--prompt-ids", "2,-99999999999999999999"], "token id -99999999999999999999 is out of range")
        try expectOneLineError(["generate", "--model", fixture, "--prompt-ids", "2,x"], "'x' is not a token id")
        try writeInputIds([[2, 99_999_999_999]], to: dir + "/in.safetensors")
        try expectOneLineError(["logits", "--model", fixture, "--input", dir + "/in.safetensors", "--output", dir + "/out.safetensors"],
                               "input_ids[0][1] is 99999999999, outside the vocabulary")
    }

    @Test func negativeMaxTokensHasARealMessage() throws {
        let fixture = try colocateFixtures() + "/opt-tiny"
        for value in ["-1", "0"] {
            try expectOneLineError(["generate", "--model", fixture, "--prompt-ids", "2", "--max-tokens", value],
                                   "--max-tokens must be at least 1, got \(value)")
        }
        // -1 is top-k's documented "off", so it must parse as a value too.
        let r = try runColocate(["generate", "--model", fixture, "--prompt-ids", "2", "--max-tokens", "2", "--top-k", "-1", "--seed", "1"])
        #expect(r.status == 0, "\(r.stderr)")
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Compute
import Foundation
import Synchronization
import Testing

@testable import Models

/// Runs `body` with a FIFO at `path`. Should `body` block opening it for reading, a helper thread
/// connects a writer (and leaves at once), so that a regression shows as a failed expectation rather
/// than a test that never ends. The helper stops when `body` returns.
func withFIFO<R>(at path: String, _ body: () throws -> R) throws -> R {
    guard mkfifo(path, 0o644) == 0 else { throw FileIOError(path, "mkfifo failed") }
    let done = Atomic<Bool>(false)
    let helper = Thread {
        while !done.load(ordering: .acquiring) {
            // Succeeds only while a reader has the FIFO open, i.e. is blocked in open().
            let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if fd >= 0 { close(fd) }
            usleep(20_000)
        }
    }
    helper.start()
    defer { done.store(true, ordering: .releasing) }
    return try body()
}

/// What the bad-input probe of issue 11 found in the file formats: each is a clear one-line error.
@Suite struct BadInputTests {
    @Test func fifoIsRefusedBeforeReading() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let readers: [(String) throws -> Void] = [
            { _ = try FileIO.readFile($0) },
            { _ = try SafeTensorsFile(path: $0) },
            { _ = try Tokenizer(path: $0) },
        ]
        for (i, read) in readers.enumerated() {
            let path = dir.file("fifo-\(i)")
            try withFIFO(at: path) {
                #expect { try read(path) } throws: { "\($0)".contains("is a FIFO, not a regular file") }
            }
        }
        // config.json as a FIFO, through the model directory.
        try withFIFO(at: dir.file("config.json")) {
            #expect { try ModelConfig.load(directory: dir.path) } throws: { "\($0)".contains("FIFO") }
        }
    }

    @Test func outputsThatAreNotRegularFilesAreLeftAlone() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let tensors = [(name: "x", tensor: Tensor([1, 2], shape: [2]))]
        // A symbolic link: neither it nor its target is replaced.
        let target = dir.file("target"), link = dir.file("link.safetensors")
        try Data("keep".utf8).write(to: URL(fileURLWithPath: target))
        #expect(symlink(target, link) == 0)
        #expect { try SafeTensorsWriter.write(tensors, to: link) } throws: { "\($0)".contains("is a symbolic link; refusing to replace it") }
        var st = stat()
        #expect(lstat(link, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep")
        // A FIFO.
        let fifo = dir.file("fifo.safetensors")
        #expect(mkfifo(fifo, 0o644) == 0)
        #expect { try SafeTensorsWriter.write(tensors, to: fifo) } throws: { "\($0)".contains("is a FIFO; refusing") }
        #expect(lstat(fifo, &st) == 0 && st.st_mode & S_IFMT == S_IFIFO)
        // A device node like /dev/null (where the system lets us make one: as root).
        let device = dir.file("null")
        if mknod(device, S_IFCHR | 0o666, dev_t(1 << 8 | 3) /* makedev(1, 3) */) == 0 {
            #expect { try SafeTensorsWriter.write(tensors, to: device) } throws: { "\($0)".contains("is a character device; refusing") }
            #expect(lstat(device, &st) == 0 && st.st_mode & S_IFMT == S_IFCHR)
        }
        // A regular file is still replaced, and a new one created.
        try SafeTensorsWriter.write(tensors, to: target)
        #expect(try SafeTensorsFile(path: target).tensor("x").floats() == [1, 2])
        try SafeTensorsWriter.write(tensors, to: dir.file("new.safetensors"))
    }

    @Test func makeDirectoriesSaysWhenAFileIsInTheWay() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try Data().write(to: URL(fileURLWithPath: dir.file("file")))
        #expect { try FileIO.makeDirectories(dir.file("file")) } throws: { "\($0)".contains("is a regular file, not a directory") }
        #expect { try FileIO.makeDirectories(dir.file("file/sub")) } throws: { "\($0)".contains("is a regular file, not a directory") }
        try FileIO.makeDirectories(dir.file("a/b"))
        #expect(FileIO.isDirectory(dir.file("a/b")))
    }

    @Test func aCheckpointThatIsADirectoryIsNamedAsOne() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.file("model.safetensors"), withIntermediateDirectories: false)
        #expect { try Checkpoint(directory: dir.path) } throws: { "\($0)".contains("model.safetensors is a directory, not a regular file") }
    }

    /// A model directory like `preset`'s whose weights named `poisoned` are all NaN.
    static func nanModel(in dir: TemporaryDirectory, preset: String = "opt-tiny", poisoned: String) throws -> String {
        let out = dir.file("model")
        let p = try ModelPreset.named(preset)
        try ModelDirectory.write(preset: p, to: out, seed: 1)
        var weights = try RandomWeights.make(config: try p.config(), seed: 1)
        for i in weights.indices where weights[i].name.contains(poisoned) {
            weights[i].tensor.pointer(Float.self).update(repeating: .nan, count: weights[i].tensor.count)
        }
        try Checkpoint.write(tensors: weights, to: out)
        return out
    }

    @Test func nanWeightsAreReportedByGenerateAndLogits() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let model = try LocalModel(directory: try Self.nanModel(in: dir, poisoned: "final_layer_norm.weight"), backend: CPUBackend())
        for params in [SamplingParams(maxTokens: 4, temperature: 0), SamplingParams(maxTokens: 4, temperature: 0.8, topK: 5, seed: 3)] {
            #expect { try model.generate(prompts: [[2, 100, 200]], params: params) } throws: {
                "\($0)".contains("logits are not finite (NaN or infinity) at generation step 1 of prompt 0")
            }
        }
        #expect { try model.logits(inputIds: [[2, 100], [2, 7]]) } throws: {
            "\($0)".contains("logits are not finite (nan at batch row 0, position 0, token 0)")
        }
    }

    @Test func samplerReportsNonFiniteLogitsAsANaNLogProbability() {
        for bad: Float in [.nan, .infinity] {
            var logits: [Float] = [0.5, 1, -2, 3]
            logits[2] = bad
            for params in [SamplingParams(temperature: 0), SamplingParams(temperature: 1), SamplingParams(temperature: 0.7, topP: 0.9, topK: 2)] {
                var rng = SplitMix64(seed: 1)
                let pick = logits.withUnsafeBufferPointer { Sampler.sample($0.baseAddress!, vocab: 4, params: params, rng: &rng) }
                #expect(pick.logprob.isNaN, "\(bad) with \(params)")
            }
        }
        // A -infinity logit is a token that cannot be drawn, not an error.
        var rng = SplitMix64(seed: 1)
        let logits: [Float] = [-.infinity, 1, 2]
        let pick = logits.withUnsafeBufferPointer { Sampler.sample($0.baseAddress!, vocab: 3, params: .init(temperature: 1), rng: &rng) }
        #expect(pick.logprob.isFinite && pick.token != 0)
    }
}

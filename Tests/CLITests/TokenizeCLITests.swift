import Foundation
import Testing

/// Runs the built binary: `colocate tokenize` / `detokenize` against the fixture tokenizer.
@Suite struct TokenizeCLITests {
    static func tokenizerDirectory() throws -> String { try colocateFixtures() + "/tokenizer" }

    @Test func tokenizePrintsCommaSeparatedIds() throws {
        let r = try runColocate(["tokenize", "--tokenizer", Self.tokenizerDirectory(), "--text", "GPU It's Ray engine training Hello weights don't"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "297,354,284,362,355,351,356,365,352,286\n")
    }

    @Test func tokenizeJSONWithATokenizerFilePath() throws {
        let r = try runColocate(["tokenize", "--tokenizer", Self.tokenizerDirectory() + "/tokenizer.json", "--text", "world weights réseau", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "{\"ids\":[375,365,348]}\n")
    }

    @Test func detokenizePrintsText() throws {
        let r = try runColocate(["detokenize", "--tokenizer", Self.tokenizerDirectory(), "--ids", "375, 365,348"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "world weights réseau\n")
        let skipped = try runColocate(["detokenize", "--tokenizer", Self.tokenizerDirectory(), "--ids", "1,375,2", "--skip-special-tokens"])
        #expect(skipped.stdout == "world\n")
    }

    @Test(arguments: [
        (["tokenize", "--tokenizer", "/nonexistent/tokenizer.json", "--text", "x"], "/nonexistent/tokenizer.json"),
        (["detokenize", "--tokenizer", "TOKENIZER", "--ids", "1,999"], "token id 999 is outside the vocabulary"),
        (["detokenize", "--tokenizer", "TOKENIZER", "--ids", "1,two"], "invalid token id 'two'"),
        (["tokenize", "--tokenizer", "CONFIG", "--text", "x"], "config.json: no model"),
        (["tokenize", "--text", "x"], "give exactly one of --model DIR or --tokenizer PATH"),
        (["tokenize", "--model", "TOKENIZER", "--tokenizer", "TOKENIZER", "--text", "x"], "give exactly one of"),
        (["detokenize", "--model", "TOKENIZER/tokenizer.json", "--ids", "1"], "not a directory"),
        (["tokenize", "--model", "/nonexistent", "--text", "x"], "/nonexistent: not a directory"),
    ])
    func errorsAreOneLineAndExitNonZero(args: [String], message: String) throws {
        let dir = try Self.tokenizerDirectory()
        let resolved = args.map {
            $0.hasPrefix("TOKENIZER") ? dir + $0.dropFirst("TOKENIZER".count) : $0 == "CONFIG" ? dir + "/../opt-tiny/config.json" : $0
        }
        let r = try runColocate(resolved)
        #expect(r.status != 0)
        #expect(r.stdout.isEmpty)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("Error: ") && r.stderr.contains(message), "\(r.stderr)")
    }

    static func family(_ name: String) throws -> String { try colocateFixtures() + "/tokenizers/" + name }

    /// `--model DIR` applies the post-processor (Llama-3's BOS) unless `--no-special-tokens`.
    @Test func modelDirectoryAndNoSpecialTokens() throws {
        let dir = try Self.family("llama3-style")
        let r = try runColocate(["tokenize", "--model", dir, "--text", "Hello world"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "0,43,72,79,322,224,90,82,85,79,71\n")
        let plain = try runColocate(["tokenize", "--model", dir, "--text", "Hello world", "--no-special-tokens", "--json"])
        #expect(plain.stdout == "{\"ids\":[43,72,79,322,224,90,82,85,79,71]}\n")
        let back = try runColocate(["detokenize", "--model", dir, "--ids", "0,43,72,79,322,224,90,82,85,79,71"])
        #expect(back.stdout == "<|begin_of_text|>Hello world\n")
        let skipped = try runColocate(["detokenize", "--model", dir, "--ids", "0,43,72,79,322,224,90,82,85,79,71", "--skip-special-tokens"])
        #expect(skipped.stdout == "Hello world\n")
    }

    @Test func tokenizerFileOfEachFamily() throws {
        let qwen = try runColocate(["tokenize", "--tokenizer", Self.family("qwen2-style") + "/tokenizer.json", "--text", "café naïve"])
        #expect(qwen.status == 0, "\(qwen.stderr)")
        #expect(qwen.stdout == "342,404\n")
        let sp = try runColocate(["tokenize", "--tokenizer", Self.family("sp-style"), "--text", "café naïve"])
        #expect(sp.stdout == "1,523,529\n")
        let spText = try runColocate(["detokenize", "--tokenizer", Self.family("sp-style"), "--ids", "1,523,529"])
        #expect(spText.stdout == "<s> café naïve\n")
    }

    @Test func aFIFOIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("colocate-fifo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("tokenizer.json").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let r = try runColocate(["tokenize", "--model", dir.path, "--text", "x"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("not a regular file"), "\(r.stderr)")
    }
}

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
        (["tokenize", "--tokenizer", "CONFIG", "--text", "x"], "unsupported pre_tokenizer"),
    ])
    func errorsAreOneLineAndExitNonZero(args: [String], message: String) throws {
        let dir = try Self.tokenizerDirectory()
        let resolved = args.map {
            $0 == "TOKENIZER" ? dir : $0 == "CONFIG" ? dir + "/../opt-tiny/config.json" : $0
        }
        let r = try runColocate(resolved)
        #expect(r.status != 0)
        #expect(r.stdout.isEmpty)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("Error: ") && r.stderr.contains(message), "\(r.stderr)")
    }
}

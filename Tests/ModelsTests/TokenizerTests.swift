import Compute
import Foundation
import Testing

import Models

@Suite struct TokenizerTests {
    struct GoldenCase: Decodable, CustomTestStringConvertible {
        var text: String
        var ids: [Int32]
        var decoded: String
        var testDescription: String { text.debugDescription }
    }

    static func golden() throws -> [GoldenCase] {
        try JSONDecoder().decode([GoldenCase].self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tokenizer/golden.json"))))
    }

    static func fixture() throws -> Tokenizer {
        try Tokenizer(path: Fixtures.path("tokenizer/tokenizer.json"))
    }

    @Test func goldenCasesMatchHuggingFace() throws {
        let tokenizer = try Self.fixture()
        let cases = try Self.golden()
        #expect(cases.count >= 16)
        for c in cases {
            #expect(tokenizer.encode(c.text) == c.ids, "encode \(c.text.debugDescription)")
            #expect(try tokenizer.decode(c.ids) == c.decoded, "decode \(c.ids)")
        }
    }

    @Test func vocabularyAndSpecialTokens() throws {
        let tokenizer = try Self.fixture()
        #expect(tokenizer.vocabSize == 376)
        #expect(tokenizer.id(of: "<s>") == 1)
        #expect(tokenizer.id(of: "</s>") == 2)
        #expect(tokenizer.id(of: "Ġworld") == 368)
        #expect(tokenizer.id(of: "not-a-token") == nil)
        #expect(tokenizer.token(of: 368) == "Ġworld")
        #expect(tokenizer.token(of: 376) == nil)
        #expect(tokenizer.specialTokenIds == [0, 1, 2])
        #expect(tokenizer.merges.count == 117)
        #expect(tokenizer.merges[0] == ("i", "n"))
    }

    @Test func addedTokensAreMatchedBeforePreTokenization() throws {
        let tokenizer = try Self.fixture()
        // "<s>" inside a word is still the special token; the text around it is tokenized alone.
        let ids = tokenizer.encode("<s>world</s> world<pad>")
        #expect(ids == [1, 375, 2, 368, 0])
        #expect(try tokenizer.decode(ids) == "<s>world</s> world<pad>")
        #expect(try tokenizer.decode(ids, skipSpecialTokens: true) == "world world")
        // Without the added-token pass, "<s>" would be three tokens.
        #expect(tokenizer.encode("<s") == [tokenizer.id(of: "<")!, tokenizer.id(of: "s")!])
    }

    @Test func decodingOutOfRangeIdsIsAnError() throws {
        let tokenizer = try Self.fixture()
        for bad: Int32 in [376, -1, Int32.max] {
            #expect { try tokenizer.decode([1, bad]) } throws: {
                ($0 as? TokenizerError)?.kind == .idOutOfRange && "\($0)".contains("\(bad)")
            }
        }
    }

    @Test func invalidUTF8DecodesToReplacementCharacters() throws {
        let tokenizer = try Self.fixture()
        // "é" is two tokens, the bytes C3 A9; either alone is not UTF-8.
        let ids = tokenizer.encode("é")
        #expect(ids.count == 2)
        #expect(try tokenizer.decode([ids[0]]) == "\u{FFFD}")
        #expect(try tokenizer.decode([ids[1], ids[0], ids[1]]) == "\u{FFFD}é")
    }

    @Test func encodeDecodeRoundTripsArbitraryText() throws {
        let tokenizer = try Self.fixture()
        var rng = SplitMix64(seed: 7)
        let alphabet = Array("ab éß日本😀 \t\n\r'sll0123.,!?-_\u{301}\u{200B}\u{A0}\u{3000}ŀ")
        for _ in 0..<300 {
            let text = String((0..<Int.random(in: 0...40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            #expect(try tokenizer.decode(tokenizer.encode(text)) == text, "\(text.debugDescription)")
        }
    }

    @Test func writtenTokenizerLoadsAndEncodesTheSame() throws {
        let original = try Self.fixture()
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        // Extend the vocabulary, as `init-model` does for a larger model vocabulary.
        var vocab = original.vocabulary
        for i in 0..<8 { vocab["<extra_\(i)>"] = Int32(376 + i) }
        let path = dir.file("tokenizer.json")
        try Tokenizer.writeByteLevelTokenizer(
            vocab: vocab, merges: original.merges,
            addedTokens: original.addedTokens.map { ($0.id, $0.content, special: $0.special) } + [(383, "<extra_7>", special: true)],
            to: path)
        let written = try Tokenizer(path: path)
        #expect(written.vocabSize == 384)
        #expect(written.id(of: "<extra_7>") == 383)
        #expect(written.encode("a<extra_7>b") == [original.id(of: "a")!, 383, original.id(of: "b")!])
        for c in try Self.golden() {
            #expect(written.encode(c.text) == c.ids)
        }
    }

    @Test func writerRefusesMergesOutsideTheVocabulary() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect {
            try Tokenizer.writeByteLevelTokenizer(vocab: ["a": 0, "b": 1], merges: [("a", "b")], addedTokens: [], to: dir.file("t.json"))
        } throws: { ($0 as? TokenizerError)?.kind == .invalidMerges }
        #expect(!FileManager.default.fileExists(atPath: dir.file("t.json")))
    }

    @Test func unsupportedComponentsAreRefused() throws {
        let base = #""model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}"#
        let cases: [(String, String)] = [
            (#"{"normalizer": {"type": "Precompiled"}, "pre_tokenizer": {"type": "ByteLevel"}, \#(base)}"#, "normalizer Precompiled"),
            (#"{"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "BertNormalizer"}]}, \#(base)}"#, "normalizer BertNormalizer"),
            (#"{"pre_tokenizer": {"type": "BertPreTokenizer"}, \#(base)}"#, "pre_tokenizer BertPreTokenizer"),
            (#"{"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "UnicodeScripts"}]}, \#(base)}"#, "pre_tokenizer UnicodeScripts"),
            (#"{"post_processor": {"type": "Unknown"}, \#(base)}"#, "post_processor Unknown"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}}"#, "dropout"),
            (#"{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(?<=a)b"}, "behavior": "Isolated"}, \#(base)}"#, "lookbehind"),
            (#"{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\p{Han}"}, "behavior": "Isolated"}, \#(base)}"#, "Han"),
            (#"{"pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "WordPiece"}, \#(base)}"#, "decoder WordPiece"),
            (#"{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "Unigram", "vocab": []}}"#, "model type Unigram"),
        ]
        for (json, message) in cases {
            #expect { try Tokenizer(json: Data(json.utf8)) } throws: {
                ($0 as? TokenizerError)?.kind == .unsupported && "\($0)".contains(message)
            }
        }
    }

    @Test func malformedFilesAreErrors() throws {
        #expect { try Tokenizer(json: Data("{".utf8)) } throws: { ($0 as? TokenizerError)?.kind == .invalidFile }
        #expect { try Tokenizer(json: Data(#"{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE"}}"#.utf8)) } throws: {
            "\($0)".contains("no vocab")
        }
        #expect { try Tokenizer(path: "/nonexistent/tokenizer.json") } throws: {
            ($0 as? TokenizerError)?.kind == .io && "\($0)".contains("/nonexistent/tokenizer.json")
        }
    }

    @Test func addPrefixSpaceAndLongWords() throws {
        var json = try String(decoding: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tokenizer/tokenizer.json"))), as: UTF8.self)
        json = json.replacingOccurrences(of: #""add_prefix_space": false"#, with: #""add_prefix_space": true"#)
            .replacingOccurrences(of: #""add_prefix_space":false"#, with: #""add_prefix_space":true"#)
        let prefixed = try Tokenizer(json: Data(json.utf8))
        #expect(prefixed.addPrefixSpace)
        let plain = try Self.fixture()
        #expect(prefixed.encode("world") == plain.encode(" world"))
        #expect(prefixed.encode(" world") == plain.encode(" world"))
        // A long word merges in O(n log n) and round-trips.
        let long = String(repeating: "training", count: 5000)
        #expect(try plain.decode(plain.encode(long)) == long)
    }
}

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

/// Files a user can get wrong, and `tokenizer_config.json`.
@Suite struct TokenizerLoadingTests {
    static let vocab = #"{"a": 0, "b": 1, "ab": 2}"#

    static func json(vocab: String = vocab, added: String = "[]", post: String = "null") -> Data {
        Data(#"{"added_tokens": \#(added), "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}, "post_processor": \#(post), "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": \#(vocab), "merges": ["a b"]}}"#.utf8)
    }

    @Test func anAbsurdAddedTokenIdIsRefused() throws {
        let added = #"[{"id": 1000000000, "content": "<huge>", "special": true}]"#
        #expect { try Tokenizer(json: Self.json(added: added)) } throws: {
            ($0 as? TokenizerError)?.kind == .invalidFile && "\($0)".contains("1000000000") && "\($0)".contains("<huge>")
        }
        // A sparse but allowed id does not size a table by it, and decodes.
        let sparse = try Tokenizer(json: Self.json(added: #"[{"id": 16000000, "content": "<far>", "special": true}]"#))
        #expect(sparse.vocabSize == 16_000_001)
        #expect(try sparse.decode([16_000_000, 2]) == "<far>ab")
        #expect(sparse.encode("ab<far>") == [2, 16_000_000])
        #expect { try sparse.decode([15_999_999]) } throws: { "\($0)".contains("has no token") }
    }

    @Test func emptyVocabulariesAndDuplicateIdsAreRefused() throws {
        #expect { try Tokenizer(json: Self.json(vocab: "{}")) } throws: { "\($0)".contains("vocab is empty") }
        #expect { try Tokenizer(json: Self.json(vocab: #"{"a": 0, "b": 0, "ab": 2}"#)) } throws: {
            ($0 as? TokenizerError)?.kind == .invalidFile && "\($0)".contains("id 0 to both")
        }
        #expect { try Tokenizer(json: Self.json(vocab: #"{"a": 0, "b": 1, "ab": -2}"#)) } throws: { "\($0)".contains("\"ab\"") }
        let clash = #"[{"id": 5, "content": "<x>"}, {"id": 5, "content": "<y>"}]"#
        #expect { try Tokenizer(json: Self.json(added: clash)) } throws: { "\($0)".contains("id 5 to both") }
    }

    @Test func aFIFOIsRefusedWithoutOpeningIt() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("tokenizer.json")
        #expect(mkfifo(path, 0o600) == 0)
        // Opening a FIFO with no writer would block forever; the check comes first.
        #expect { try Tokenizer(path: path) } throws: {
            ($0 as? TokenizerError)?.kind == .io && "\($0)".contains("not a regular file")
        }
        #expect { try Tokenizer(modelDirectory: dir.path) } throws: { "\($0)".contains("not a regular file") }
    }

    @Test func configTokensTemplatesAndAddBos() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try Self.json(added: #"[{"id": 3, "content": "<s>", "special": true}, {"id": 4, "content": "</s>", "special": true}]"#,
                      post: #"{"type": "ByteLevel"}"#).write(to: URL(fileURLWithPath: dir.file("tokenizer.json")))
        let config = #"""
            {"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false}, "eos_token": "</s>",
             "add_bos_token": true, "add_eos_token": true,
             "chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}
            """#
        try Data(config.utf8).write(to: URL(fileURLWithPath: dir.file("tokenizer_config.json")))
        let tokenizer = try Tokenizer(modelDirectory: dir.path)
        #expect(tokenizer.config?.bosToken == "<s>")
        #expect(tokenizer.bosTokenId == 3 && tokenizer.eosTokenId == 4)
        #expect(tokenizer.config?.chatTemplate == "D")
        #expect(tokenizer.config?.chatTemplate(named: "tool_use") == "T")
        // The ByteLevel post-processor adds nothing, so add_bos_token / add_eos_token apply.
        #expect(tokenizer.encode("ab") == [3, 2, 4])
        #expect(tokenizer.encode("ab", addSpecialTokens: false) == [2])
        // A chat_template.jinja beside the config replaces its default template.
        try Data("{{ bos_token }}J".utf8).write(to: URL(fileURLWithPath: dir.file("chat_template.jinja")))
        let withFile = try Tokenizer(path: dir.file("tokenizer.json"))
        #expect(withFile.config?.chatTemplate == "{{ bos_token }}J")
        #expect(withFile.config?.chatTemplate(named: "tool_use") == "T")

        // A post-processor that adds tokens wins over add_bos_token.
        try Self.json(added: #"[{"id": 3, "content": "<s>", "special": true}, {"id": 4, "content": "</s>", "special": true}]"#,
                      post: #"{"type": "RobertaProcessing", "cls": ["<s>", 3], "sep": ["</s>", 4]}"#).write(to: URL(fileURLWithPath: dir.file("tokenizer.json")))
        #expect(try Tokenizer(modelDirectory: dir.path).encode("ab") == [3, 2, 4])
        try Data(#"{"add_bos_token": true, "bos_token": "<nope>"}"#.utf8).write(to: URL(fileURLWithPath: dir.file("tokenizer_config.json")))
        try Self.json(post: #"{"type": "ByteLevel"}"#).write(to: URL(fileURLWithPath: dir.file("tokenizer.json")))
        #expect { try Tokenizer(modelDirectory: dir.path) } throws: { "\($0)".contains("<nope>") }
        try Data(#"{"chat_template": 7}"#.utf8).write(to: URL(fileURLWithPath: dir.file("tokenizer_config.json")))
        #expect { try Tokenizer(modelDirectory: dir.path) } throws: { "\($0)".contains("chat_template") }
    }
}

import Compute
import Foundation
import Testing

@testable import Models

/// The Qwen2, Llama-3 and SentencePiece-style (Llama-2/Mistral) tokenizers against Hugging Face
/// tokenizers' own output: every golden case's ids and decoded text exactly.
@Suite struct TokenizerFamilyTests {
    static let families = ["qwen2-style", "llama3-style", "sp-style"]

    struct GoldenCase: Decodable {
        var text: String
        var ids: [Int32]
        var decoded: String
    }

    struct ChatCase: Decodable {
        var text: String?
        var ids: [Int32]?
    }

    static func directory(_ family: String) throws -> String {
        try Fixtures.path("tokenizers/\(family)")
    }

    static func load(_ family: String) throws -> Tokenizer {
        try Tokenizer(modelDirectory: directory(family))
    }

    static func golden(_ family: String) throws -> [GoldenCase] {
        try JSONDecoder().decode([GoldenCase].self, from: Data(contentsOf: URL(fileURLWithPath: directory(family) + "/golden.json")))
    }

    @Test(arguments: families)
    func goldenEncodeAndDecodeMatchHuggingFace(family: String) throws {
        let tokenizer = try Self.load(family)
        let cases = try Self.golden(family)
        #expect(cases.count >= 20)
        for c in cases {
            #expect(tokenizer.encode(c.text) == c.ids, "\(family) encode \(c.text.debugDescription)")
            // Scalars, not String ==, which would call NFC and NFD text equal.
            #expect(Array(try tokenizer.decode(c.ids).unicodeScalars) == Array(c.decoded.unicodeScalars), "\(family) decode \(c.ids)")
        }
    }

    /// The rendered chat prompts encode, without special tokens, to the ids transformers gives.
    @Test(arguments: families)
    func renderedChatTextEncodesWithoutSpecialTokens(family: String) throws {
        let tokenizer = try Self.load(family)
        let cases = try JSONDecoder().decode([ChatCase].self, from: Data(contentsOf: URL(fileURLWithPath: Self.directory(family) + "/chat_golden.json")))
        var checked = 0
        for c in cases {
            guard let text = c.text, let ids = c.ids else { continue }
            #expect(tokenizer.encode(text, addSpecialTokens: false) == ids, "\(family) \(text.debugDescription)")
            if family != "sp-style" {  // (Metaspace-style decoding turns "<s>[INST]" into "<s> [INST]", as HF does)
                #expect(try tokenizer.decode(ids) == text)
            }
            checked += 1
        }
        #expect(checked >= 2)
    }

    @Test func specialTokensAndConfig() throws {
        let llama = try Self.load("llama3-style")
        #expect(llama.config?.bosToken == "<|begin_of_text|>")
        #expect(llama.config?.eosToken == "<|eot_id|>")
        #expect(llama.bosTokenId == 0)
        #expect(llama.eosTokenId == 1)
        #expect(llama.config?.chatTemplate?.hasPrefix("{{- bos_token }}") == true)
        // The TemplateProcessing post-processor adds BOS; without special tokens it does not.
        let hello = llama.encode("Hello world")
        #expect(hello.first == 0)
        #expect(llama.encode("Hello world", addSpecialTokens: false) == Array(hello.dropFirst()))
        #expect(try llama.decode(hello, skipSpecialTokens: true) == "Hello world")

        let qwen = try Self.load("qwen2-style")
        #expect(qwen.config?.bosToken == nil)
        #expect(qwen.eosTokenId == qwen.id(of: "<|im_end|>"))
        #expect(qwen.encode("Hello") == qwen.encode("Hello", addSpecialTokens: false))

        let sp = try Self.load("sp-style")
        #expect(sp.bosTokenId == 1)
        #expect(sp.eosTokenId == 2)
    }

    /// Text between added tokens is normalized on its own: the SentencePiece-style `Prepend` puts `▁`
    /// after `</s>` too, and `prepend` decoding keeps the spaces Hugging Face keeps.
    @Test func addedTokensSplitTheNormalizedText() throws {
        let sp = try Self.load("sp-style")
        let ids = sp.encode("<s>hi there</s>x")
        #expect(ids == [1, 1, 320, 298, 299, 320, 309, 298, 295, 337, 2, 320, 313])
        #expect(try sp.decode(ids) == "<s><s> hi there</s> x")
        #expect(try sp.decode(ids, skipSpecialTokens: true) == "hi there x")
    }

    /// Llama-3's `ignore_merges`: a word in the vocabulary is one token even where the merges would
    /// give others (ids from Hugging Face tokenizers).
    @Test(arguments: [(true, [4, 5, 2, 3, 5, 3, 2, 3, 2] as [Int32]), (false, [3, 2, 5, 2, 3, 5, 3, 2, 3, 2])])
    func ignoreMergesKeepsVocabularyWords(ignoreMerges: Bool, expected: [Int32]) throws {
        let json = #"{"added_tokens": [], "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}, "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "ignore_merges": \#(ignoreMerges), "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4, "Ġ": 5}, "merges": ["a b"]}}"#
        let tokenizer = try Tokenizer(json: Data(json.utf8))
        #expect(tokenizer.encode("abc cab abcabc") == expected)
        #expect(try tokenizer.decode(expected) == "abc cab abcabc")

        // The same with all 256 byte characters in the vocabulary (the byte-table path): ids 0..<256 in
        // byte order, then "ab" 256 and "abc" 257.
        func quoted(_ s: Unicode.Scalar) -> String { s == "\\" || s == "\"" ? "\"\\\(s)\"" : "\"\(s)\"" }
        var vocab = ByteLevel.byteToScalar.enumerated().map { "\(quoted($0.element)): \($0.offset)" }
        vocab += [#""ab": 256"#, #""abc": 257"#]
        let full = #"{"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}, "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "ignore_merges": \#(ignoreMerges), "vocab": {\#(vocab.joined(separator: ", "))}, "merges": ["a b"]}}"#
        let byteTable = try Tokenizer(json: Data(full.utf8))
        let map: [Int32: Int32] = [0: 97, 1: 98, 2: 99, 3: 256, 4: 257, 5: 32]
        #expect(byteTable.encode("abc cab abcabc") == expected.map { map[$0]! })
    }

    @Test(arguments: families)
    func arbitraryTextRoundTrips(family: String) throws {
        let tokenizer = try Self.load(family)
        var rng = SplitMix64(seed: 11)
        let alphabet = Array("ab éß日本😀 \t\n\r'sll0123.,!?-_\u{200B}\u{A0}\u{3000}ŀ<|>")
        for _ in 0..<200 {
            let text = String((0..<Int.random(in: 0...30, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            let ids = tokenizer.encode(text, addSpecialTokens: false)
            let decoded = try tokenizer.decode(ids)
            #expect(decoded == text, "\(family) \(text.debugDescription)")
        }
    }

    /// `skip_special_tokens`: Hugging Face drops every special added token, which in the
    /// SentencePiece-style file includes the `<0xNN>` byte tokens (so "Hello" loses its "H").
    @Test func skipSpecialTokensMatchesHuggingFace() throws {
        for family in ["qwen2-style", "llama3-style"] {
            let tokenizer = try Self.load(family)
            for c in try Self.golden(family) {
                let expected = c.decoded.hasPrefix("<|begin_of_text|>") ? String(c.decoded.dropFirst("<|begin_of_text|>".count)) : c.decoded
                #expect(Array(try tokenizer.decode(c.ids, skipSpecialTokens: true).unicodeScalars) == Array(expected.unicodeScalars))
            }
        }
        let sp = try Self.load("sp-style")
        let expected = [
            "ello world",
            "DON'T stop, we'll ",
            "123456 and 3.14159",
            "ete (decomposed)",
            "café naïve",
            "line1\r\nline2\n\n\nline3",
            "   leading spaces",
            "trailing spaces   ",
            "\ttab\tseparated",
            "日本語のテキスト 中文字符",
            "emoi  mixed",
            "x=1+2*3 def f(a, b):\n\treturn a",
            "ﬁne ①② Ünïcödé",
            "",
            " ",
            "  ",
            "12345 engine   indented The x=1+2*3 12345",
            "x=1+2*3 日本語のテキスト step naïve 2026-12-02 I'M def f(a, b):",
            "def f(a, b): ①② answer DON'T x=1+2*3",
            "x=1+2*3   indented 12345 answer DON'T we'll line\r\nbreak DON'T",
            "ﬁne I'M def f(a, b):",
            "def f(a, b):   indented \treturn café x=1+2*3 \treturn x=1+2*3 12345",
            "URL:https://a.b/c?d=e 中文字符 colocate question answer step line\r\nbreak The",
            "question URL:https://a.b/c?d=e 3.14159 ﬁne colocate 日本語のテキスト naïve The café",
        ]
        let cases = try Self.golden("sp-style")
        #expect(cases.count == expected.count)
        for (c, text) in zip(cases, expected) {
            #expect(Array(try sp.decode(c.ids, skipSpecialTokens: true).unicodeScalars) == Array(text.unicodeScalars), "\(c.ids)")
        }
        // The chat prompt decodes with "<s> " as Hugging Face's Metaspace-style decoder gives it.
        #expect(try sp.decode(sp.encode("<s>[INST] What is 2+3? [/INST]", addSpecialTokens: false)) == "<s> [INST] What is 2+3? [/INST]")
    }
}

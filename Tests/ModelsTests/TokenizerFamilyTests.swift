import Compute
import Foundation
import Testing

import Models

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
            #expect(try tokenizer.decode(c.ids) == c.decoded, "\(family) decode \(c.ids)")
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

    /// Llama-3's `ignore_merges`: a word in the vocabulary is one token even where merges would split it.
    @Test func ignoreMergesKeepsVocabularyWords() throws {
        let llama = try Self.load("llama3-style")
        for (token, id) in llama.vocabulary where token.unicodeScalars.count > 1 && !token.contains("Ġ") && !token.contains("Ċ") {
            let text = try llama.decode([id])
            // Only words the split pattern keeps whole.
            guard text.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic }) else { continue }
            #expect(llama.encode(text, addSpecialTokens: false) == [id], "\(token)")
        }
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
}

import Foundation
import Models
import Testing

/// The definition of correct for chat templates: the text jinja2 renders under transformers'
/// settings (`apply_chat_template(tokenize=False)`), and the same refusals.
@Suite struct ChatTemplateGoldenTests {
    static let styles = ["qwen2-style", "llama3-style", "sp-style"]

    struct Case {
        var messages: [JSONValue]
        var tools: [JSONValue]?
        var addGenerationPrompt: Bool
        var text: String?
        var error: String?
    }

    static func cases(_ style: String) throws -> [Case] {
        let json = try JSONValue.parse(Array(Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tokenizers/\(style)/chat_golden.json")))))
        return try #require(json.arrayValue).map { c in
            Case(messages: c["messages"]?.arrayValue ?? [], tools: c["tools"]?.arrayValue,
                 addGenerationPrompt: c["add_generation_prompt"]?.boolValue ?? false,
                 text: c["text"]?.stringValue, error: c["error"]?.stringValue)
        }
    }

    @Test(arguments: styles)
    func rendersLikeTransformers(style: String) throws {
        let files = try ChatTemplate.load(modelDirectory: Fixtures.path("tokenizers/\(style)"))
        let template = try files.template()
        let cases = try Self.cases(style)
        #expect(cases.count >= 7)
        for (i, c) in cases.enumerated() {
            do {
                let text = try template.render(messages: c.messages, tools: c.tools, addGenerationPrompt: c.addGenerationPrompt,
                                               bosToken: files.bosToken, eosToken: files.eosToken)
                #expect(c.error == nil, "case \(i): rendered, but transformers refused with \(c.error ?? "")")
                #expect(text == c.text, "case \(i)")
            } catch {
                #expect(c.error != nil, "case \(i): \(error)")
                #expect(error.message == c.error, "case \(i)")
            }
        }
    }

    /// The golden `ids` are the rendered text encoded without added special tokens. They are checked
    /// with whichever of these tokenizers `Tokenizer` can load (today's byte-level-only one loads
    /// none of them; the general tokenizer will).
    @Test(arguments: styles)
    func idsMatchWhereTheTokenizerLoads(style: String) throws {
        guard let tokenizer = try? Tokenizer(path: Fixtures.path("tokenizers/\(style)/tokenizer.json")) else { return }
        let json = try JSONValue.parse(Array(Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tokenizers/\(style)/chat_golden.json")))))
        for c in try #require(json.arrayValue) {
            guard let text = c["text"]?.stringValue, let ids = c["ids"]?.arrayValue else { continue }
            #expect(tokenizer.encode(text, addSpecialTokens: false).map(Int.init) == ids.compactMap(\.intValue), "\(style)")
        }
    }

    @Test func loadsTokensAndTemplateFromTokenizerConfig() throws {
        let files = try ChatTemplate.load(modelDirectory: Fixtures.path("tokenizers/llama3-style"))
        #expect(files.bosToken == "<|begin_of_text|>")
        #expect(files.eosToken == "<|eot_id|>")
        #expect(files.templates.keys.sorted() == ["default"])
        let qwen = try ChatTemplate.load(modelDirectory: Fixtures.path("tokenizers/qwen2-style"))
        #expect(qwen.bosToken == nil)
    }
}

/// Where templates come from: tokenizer_config.json (a string or named list) and the template files
/// transformers writes beside it.
@Suite struct ChatTemplateLoadingTests {
    @Test func templateFilesTakePrecedenceAndAddNames() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try Data(#"{"chat_template": [{"name": "default", "template": "config"}, {"name": "rag", "template": "rag"}], "eos_token": {"content": "</s>", "lstrip": false}}"#.utf8)
            .write(to: URL(fileURLWithPath: dir.file("tokenizer_config.json")))
        var files = try ChatTemplate.load(modelDirectory: dir.path)
        #expect(try files.template().render(messages: []) == "config")
        #expect(try files.template(named: "rag").render(messages: []) == "rag")
        #expect(files.eosToken == "</s>" && files.bosToken == nil)

        try Data("file {{ eos_token }}\n".utf8).write(to: URL(fileURLWithPath: dir.file("chat_template.jinja")))
        try FileManager.default.createDirectory(atPath: dir.file("additional_chat_templates"), withIntermediateDirectories: true)
        try Data("tools".utf8).write(to: URL(fileURLWithPath: dir.file("additional_chat_templates/tool_use.jinja")))
        files = try ChatTemplate.load(modelDirectory: dir.path)
        #expect(try files.template().render(messages: [], eosToken: files.eosToken) == "file </s>")
        #expect(try files.template(named: "tool_use").render(messages: []) == "tools")
        #expect(files.templates.keys.sorted() == ["default", "rag", "tool_use"])
    }

    @Test func aBadTemplateOrConfigIsAOneLineError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try Data(#"{"chat_template": "{% if %}"}"#.utf8).write(to: URL(fileURLWithPath: dir.file("tokenizer_config.json")))
        #expect { try ChatTemplate.load(modelDirectory: dir.path).template() } throws: { "\($0)".contains("line 1") }
        try Data(#"{"chat_template": 5}"#.utf8).write(to: URL(fileURLWithPath: dir.file("tokenizer_config.json")))
        #expect { try ChatTemplate.load(modelDirectory: dir.path) } throws: { "\($0)".contains("chat_template must be a string") }
        #expect { try ChatTemplate.load(modelDirectory: dir.path + "/none").template() } throws: { "\($0)".contains("has no chat template") }
    }
}

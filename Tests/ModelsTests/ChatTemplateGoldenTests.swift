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

    @Test func loadsTokensAndTemplateFromTokenizerConfig() throws {
        let files = try ChatTemplate.load(modelDirectory: Fixtures.path("tokenizers/llama3-style"))
        #expect(files.bosToken == "<|begin_of_text|>")
        #expect(files.eosToken == "<|eot_id|>")
        #expect(files.templates.keys.sorted() == ["default"])
        let qwen = try ChatTemplate.load(modelDirectory: Fixtures.path("tokenizers/qwen2-style"))
        #expect(qwen.bosToken == nil)
    }
}

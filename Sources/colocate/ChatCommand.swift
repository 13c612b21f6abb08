import ArgumentParser
import Foundation
import Models

/// `colocate chat`: renders a conversation with the model's chat template, as
/// `tokenizer.apply_chat_template(messages, tools=..., add_generation_prompt=..., tokenize=False)`.
struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render a conversation with the model's chat template (tokenizer_config.json or chat_template.jinja).")

    @Option(help: "Model directory (tokenizer_config.json; tokenizer.json for --json).")
    var model: String
    @Option(help: "JSON file: a list of {\"role\": ..., \"content\": ...} messages.")
    var messages: String
    @Option(help: "JSON file: a list of tool schemas, passed to the template as `tools`.")
    var tools: String?
    @Flag(help: "End with the header of the assistant's reply (add_generation_prompt).")
    var addGenerationPrompt = false
    @Option(help: "Name of the template when tokenizer_config.json lists several (default: \"default\").")
    var template: String?
    @Option(help: "JSON object of extra template variables, e.g. '{\"enable_thinking\": false}' (vLLM's chat_template_kwargs).")
    var chatTemplateKwargs: String?
    @Flag(help: "Print {\"text\": ..., \"ids\": [...]}; ids encode the text without adding special tokens, as vLLM does for chat prompts.")
    var json = false

    func run() throws {
        let rendered = try ChatInput.render(model: model, messagesPath: messages, toolsPath: tools,
                                            addGenerationPrompt: addGenerationPrompt, template: template,
                                            kwargs: chatTemplateKwargs)
        guard json else {
            print(rendered, terminator: "")
            return
        }
        let tokenizer = try ChatInput.tokenizer(model: model)
        try CLIOutput.printJSON(["text": rendered, "ids": tokenizer.encode(rendered, addSpecialTokens: false).map { Int($0) }])
    }
}

/// Reading conversations from files and rendering them, shared by `chat` and `generate --messages`.
enum ChatInput {
    /// A JSON file's list: the file is a list, or an object whose `key` member is one.
    static func list(_ path: String, key: String) throws -> [JSONValue] {
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw CLIError("cannot read \(path): \((error as NSError).localizedDescription)")
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes)
        } catch {
            throw CLIError("\(path): not valid JSON: \(error)")
        }
        if let list = json.arrayValue ?? json[key]?.arrayValue { return list }
        throw CLIError("\(path): expected a JSON list of \(key) (or an object with a \"\(key)\" list)")
    }

    static func render(model: String, messagesPath: String, toolsPath: String?, addGenerationPrompt: Bool,
                       template name: String?, kwargs: String? = nil) throws -> String {
        var extra: [String: JSONValue] = [:]
        if let kwargs {
            guard let members = (try? JSONValue.parse(Array(kwargs.utf8)))?.objectMembers else {
                throw CLIError("--chat-template-kwargs must be a JSON object, not \(kwargs)")
            }
            for (k, v) in members { extra[k] = v }
        }
        let messages = try list(messagesPath, key: "messages")
        for (i, m) in messages.enumerated() where m.objectMembers == nil {
            throw CLIError("\(messagesPath): message \(i) is not a JSON object")
        }
        let tools = try toolsPath.map { try list($0, key: "tools") }
        let files: ChatTemplate.Files
        let template: ChatTemplate
        do {
            files = try ChatTemplate.load(modelDirectory: model)
            template = try files.template(named: name)
        } catch {
            throw CLIError("\(model): \(error)")
        }
        do {
            return try template.render(messages: messages, tools: tools, addGenerationPrompt: addGenerationPrompt,
                                       extra: extra, bosToken: files.bosToken, eosToken: files.eosToken)
        } catch {
            throw CLIError("\(error)".replacingOccurrences(of: "\n", with: " "))
        }
    }

    static func tokenizer(model: String) throws -> Tokenizer {
        let path = model + "/tokenizer.json"
        guard FileManager.default.fileExists(atPath: path) else { throw CLIError("\(model) has no tokenizer.json to encode the prompt") }
        do {
            return try Tokenizer(path: path)
        } catch {
            throw CLIError("\(error)")
        }
    }
}

import Foundation

/// What `tokenizer_config.json` (as transformers writes it) says beyond `tokenizer.json`: the special
/// tokens by role, whether to add BOS/EOS, and the chat templates. A `chat_template.jinja` file beside
/// it, which newer model directories use, replaces the config's default template (as in transformers).
public struct TokenizerConfig: Sendable {
    /// `bos_token` / `eos_token` / `unk_token` / `pad_token`: a string or an AddedToken object's content.
    public var bosToken: String?
    public var eosToken: String?
    public var unkToken: String?
    public var padToken: String?
    /// `add_bos_token` / `add_eos_token`, when set.
    public var addBosToken: Bool?
    public var addEosToken: Bool?
    /// The default chat template: `chat_template` as a string, the entry named "default" of a list,
    /// or the contents of `chat_template.jinja`.
    public var chatTemplate: String?
    /// Every named template (a string `chat_template` is named "default").
    public var chatTemplates: [String: String]
    /// `model_max_length`, when it is an integer.
    public var modelMaxLength: Int?
    /// The whole file, for anything else a caller needs.
    public var json: JSONValue

    public init(json: JSONValue, chatTemplateFile: String? = nil) throws(TokenizerError) {
        guard json.objectMembers != nil else { throw TokenizerError(.invalidFile, "tokenizer_config is not a JSON object") }
        self.json = json
        func token(_ key: String) throws(TokenizerError) -> String? {
            guard let v = json[key], !v.isNull else { return nil }
            if let s = v.stringValue { return s }
            if let content = v["content"]?.stringValue { return content }
            throw TokenizerError(.invalidFile, "tokenizer_config \(key) is neither a string nor an object with content")
        }
        func flag(_ key: String) throws(TokenizerError) -> Bool? {
            guard let v = json[key], !v.isNull else { return nil }
            guard let b = v.boolValue else { throw TokenizerError(.invalidFile, "tokenizer_config \(key) is not true or false") }
            return b
        }
        bosToken = try token("bos_token")
        eosToken = try token("eos_token")
        unkToken = try token("unk_token")
        padToken = try token("pad_token")
        addBosToken = try flag("add_bos_token")
        addEosToken = try flag("add_eos_token")
        modelMaxLength = json["model_max_length"]?.intValue

        var templates: [String: String] = [:]
        var defaultTemplate: String? = nil
        if let t = json["chat_template"], !t.isNull {
            if let s = t.stringValue {
                templates["default"] = s
                defaultTemplate = s
            } else if let list = t.arrayValue {
                for entry in list {
                    guard let name = entry["name"]?.stringValue, let template = entry["template"]?.stringValue else {
                        throw TokenizerError(.invalidFile, "chat_template entries must be {\"name\": ..., \"template\": ...}, not \(entry.serialized())")
                    }
                    templates[name] = template
                }
                defaultTemplate = templates["default"]
            } else {
                throw TokenizerError(.invalidFile, "chat_template must be a string or a list of {name, template}")
            }
        }
        if let chatTemplateFile {
            templates["default"] = chatTemplateFile
            defaultTemplate = chatTemplateFile
        }
        chatTemplates = templates
        chatTemplate = defaultTemplate
    }

    /// The template named `name`, or the default one when `name` is nil.
    public func chatTemplate(named name: String?) -> String? {
        guard let name else { return chatTemplate }
        return chatTemplates[name]
    }

    /// Reads `tokenizer_config.json` and `chat_template.jinja` of `directory`; nil when neither exists.
    public static func load(directory: String) throws(TokenizerError) -> TokenizerConfig? {
        let configPath = directory + "/tokenizer_config.json"
        let templatePath = directory + "/chat_template.jinja"
        let hasConfig = FileManager.default.fileExists(atPath: configPath)
        let hasTemplate = FileManager.default.fileExists(atPath: templatePath)
        guard hasConfig || hasTemplate else { return nil }
        var template: String? = nil
        if hasTemplate {
            let bytes = try Tokenizer.readRegularFile(templatePath)
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw TokenizerError(.invalidFile, "\(templatePath): not UTF-8 text")
            }
            template = text
        }
        var json = JSONValue.object([])
        if hasConfig {
            let bytes = try Tokenizer.readRegularFile(configPath)
            do {
                json = try JSONValue.parse(bytes)
            } catch {
                throw TokenizerError(.invalidFile, "\(configPath): not valid JSON: \(error)")
            }
        }
        do {
            return try TokenizerConfig(json: json, chatTemplateFile: template)
        } catch {
            throw TokenizerError(error.kind, "\(configPath): \(error.message)")
        }
    }
}

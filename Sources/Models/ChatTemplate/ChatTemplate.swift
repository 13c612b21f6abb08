import Foundation

/// A Hugging Face chat template: the Jinja program in `tokenizer_config.json` (or
/// `chat_template.jinja`) that turns a conversation into the prompt text the model was trained on.
///
/// Rendering matches `tokenizer.apply_chat_template(..., tokenize=False)`: jinja2 with
/// `trim_blocks`, `lstrip_blocks`, the loop-controls extension, transformers' `tojson`
/// (`json.dumps(ensure_ascii=False)`, key order kept), `raise_exception` and `strftime_now`.
/// The template is parsed once; `render` may be called from any thread.
public struct ChatTemplate: Sendable {
    /// The template text.
    public let source: String
    private let nodes: [TemplateNode]

    /// Parses a template; a syntax error names its line and column.
    public init(source: String) throws(ChatTemplateError) {
        self.source = source
        self.nodes = try TemplateParser.parse(source)
    }

    /// Renders a conversation.
    ///
    /// - Parameters:
    ///   - messages: the conversation, `[{"role": ..., "content": ...}, ...]`, passed as `messages`.
    ///   - tools: tool schemas, passed as `tools` (`None` when nil, as transformers does).
    ///   - addGenerationPrompt: passed as `add_generation_prompt`.
    ///   - extra: further template variables (`enable_thinking`, `date_string`, ...).
    ///   - bosToken, eosToken: the tokenizer's special tokens; a nil one is left undefined.
    /// - Throws: `ChatTemplateError.raised` with the template's own message when it refuses the
    ///   conversation (`raise_exception`); `.render` when evaluation fails.
    public func render(
        messages: [JSONValue], tools: [JSONValue]? = nil, addGenerationPrompt: Bool = false,
        extra: [String: JSONValue] = [:], bosToken: String? = nil, eosToken: String? = nil,
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws(ChatTemplateError) -> String {
        var globals = TemplateBuiltins.globals(now: now)
        if let bosToken { globals["bos_token"] = .string(bosToken) }
        if let eosToken { globals["eos_token"] = .string(eosToken) }
        for (k, v) in extra { globals[k] = TemplateValue(json: v) }
        globals["messages"] = .list(messages.map(TemplateValue.init(json:)))
        globals["tools"] = tools.map { .list($0.map(TemplateValue.init(json:))) } ?? TemplateValue.none
        globals["documents"] = TemplateValue.none
        globals["add_generation_prompt"] = .bool(addGenerationPrompt)
        return try TemplateInterpreter(globals: globals).render(nodes)
    }
}

extension ChatTemplate {
    /// What a model directory says about chat formatting: its template(s) and special tokens.
    public struct Files: Sendable {
        /// Templates by name; a single-template file has the name "default".
        public var templates: [String: String]
        public var bosToken: String?
        public var eosToken: String?

        /// The template called `name`, or "default" (the one transformers uses when none is named).
        public func template(named name: String? = nil) throws(ModelError) -> ChatTemplate {
            let key = name ?? "default"
            guard let source = templates[key] else {
                if templates.isEmpty { throw ModelError("the model has no chat template (tokenizer_config.json has no chat_template)") }
                throw ModelError("no chat template named '\(key)'; the model has: \(templates.keys.sorted().joined(separator: ", "))")
            }
            do {
                return try ChatTemplate(source: source)
            } catch {
                throw ModelError("\(error)")
            }
        }
    }

    /// The model's chat templates and special tokens: `chat_template` of `tokenizer_config.json` (a string,
    /// or a list of `{name, template}`) with its `bos_token`/`eos_token`, as ``TokenizerConfig`` reads them;
    /// `chat_template.jinja` and `additional_chat_templates/*.jinja` take precedence, as in transformers.
    public static func load(modelDirectory: String) throws(ModelError) -> Files {
        let config: TokenizerConfig?
        do {
            config = try TokenizerConfig.load(directory: modelDirectory)
        } catch {
            throw ModelError(error.message)
        }
        var files = Files(templates: config?.chatTemplates ?? [:], bosToken: config?.bosToken, eosToken: config?.eosToken)
        // transformers ≥ 4.51 saves templates as files: `chat_template.jinja` (the default, which
        // TokenizerConfig reads) and `additional_chat_templates/NAME.jinja`, which take precedence too.
        func read(_ path: String) throws(ModelError) -> String {
            do {
                return String(decoding: try FileIO.readFile(path, maxBytes: 16 << 20), as: UTF8.self)
            } catch {
                throw ModelError("\(error)")
            }
        }
        let additional = modelDirectory + "/additional_chat_templates"
        if FileIO.isDirectory(additional) {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: additional)) ?? []
            for name in names.sorted() where name.hasSuffix(".jinja") {
                files.templates[String(name.dropLast(".jinja".count))] = try read(additional + "/" + name)
            }
        }
        return files
    }
}

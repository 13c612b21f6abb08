import Foundation
import Models
import Testing

/// Runs the built binary: `colocate chat` against the chat-template goldens (jinja2 under
/// transformers' settings), and `colocate generate --messages`.
@Suite struct ChatCLITests {
    struct Scratch {
        let path: String
        init() throws {
            path = NSTemporaryDirectory() + "colocate-chat-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        func write(_ name: String, _ text: String) throws -> String {
            let file = path + "/" + name
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            return file
        }
        func remove() { try? FileManager.default.removeItem(atPath: path) }
    }

    /// The golden cases, parsed keeping key order (tool schemas are printed with `tojson`).
    static func golden(_ style: String) throws -> [JSONValue] {
        let data = try Data(contentsOf: URL(fileURLWithPath: try colocateFixtures() + "/tokenizers/\(style)/chat_golden.json"))
        return try #require(try JSONValue.parse([UInt8](data)).arrayValue)
    }

    @Test(arguments: ["qwen2-style", "llama3-style", "sp-style"])
    func printsTheRenderedPromptExactly(style: String) throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let model = try colocateFixtures() + "/tokenizers/\(style)"
        var checked = 0
        for (i, c) in try Self.golden(style).enumerated() {
            var args = ["chat", "--model", model, "--messages", try scratch.write("m\(i).json", try #require(c["messages"]).serialized())]
            if let tools = c["tools"], !tools.isNull { args += ["--tools", try scratch.write("t\(i).json", tools.serialized())] }
            if c["add_generation_prompt"]?.boolValue == true { args.append("--add-generation-prompt") }
            let r = try runColocate(args)
            if let text = c["text"]?.stringValue {
                #expect(r.status == 0, "\(style) case \(i): \(r.stderr)")
                #expect(r.stdout == text, "\(style) case \(i)")
            } else {
                let message = try #require(c["error"]?.stringValue)
                #expect(r.status != 0 && r.stdout.isEmpty, "\(style) case \(i)")
                #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(message), "\(style) case \(i): \(r.stderr)")
            }
            checked += 1
        }
        #expect(checked >= 7)
    }

    /// A model directory: llama-tiny's weights, the byte-level fixture tokenizer, a chat template.
    static func chatModel(in scratch: Scratch, templates: String? = nil, generation: String? = nil) throws -> String {
        let fixtures = try colocateFixtures()
        let dir = scratch.path + "/model"
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: dir + "/model.safetensors", withDestinationPath: fixtures + "/llama-tiny/model.safetensors")
        try fm.copyItem(atPath: fixtures + "/llama-tiny/config.json", toPath: dir + "/config.json")
        // The fixture tokenizer has 376 ids and llama-tiny 512: give the rest plain names so that
        // every generated id decodes.
        var tokenizer = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/tokenizer/tokenizer.json"))) as? [String: Any])
        var bpe = try #require(tokenizer["model"] as? [String: Any])
        var vocab = try #require(bpe["vocab"] as? [String: Int])
        for id in 376..<512 { vocab["zz\(id)"] = id }
        bpe["vocab"] = vocab
        tokenizer["model"] = bpe
        try JSONSerialization.data(withJSONObject: tokenizer).write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        let template = #"{% for m in messages %}<s>{{ m.role }}: {{ m.content | trim }}</s>{% endfor %}{% if add_generation_prompt %}<s>assistant:{% endif %}"#
        let config: [String: Any] = ["bos_token": ["content": "<s>"], "eos_token": "</s>",
                                     "chat_template": templates.map { _ in [["name": "default", "template": template],
                                                                           ["name": "shout", "template": "{{ messages[0].content | upper }}"]] as Any } ?? template]
        try String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self)
            .write(toFile: dir + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        if let generation { try generation.write(toFile: dir + "/generation_config.json", atomically: true, encoding: .utf8) }
        return dir
    }

    @Test func jsonCarriesTheTextAndItsIdsWithoutAddedSpecialTokens() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let model = try Self.chatModel(in: scratch)
        let messages = try scratch.write("m.json", #"[{"role": "user", "content": " Hello world "}]"#)
        let r = try runColocate(["chat", "--model", model, "--messages", messages, "--add-generation-prompt", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let out = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let text = try #require(out["text"] as? String)
        #expect(text == "<s>user: Hello world</s><s>assistant:")
        let ids = try #require(out["ids"] as? [Int])
        let tokenized = try runColocate(["tokenize", "--tokenizer", model, "--text", text])
        #expect(ids.map(String.init).joined(separator: ",") + "\n" == tokenized.stdout)
        #expect(ids.first == 1, "<s> is in the text once, not added again")
    }

    @Test func templateKwargsReachTheTemplate() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let model = scratch.path + "/model"
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        _ = try scratch.write("model/chat_template.jinja", "{{ messages[0].content }}{% if enable_thinking is defined and enable_thinking is false %} /no_think{% endif %}\n")
        let messages = try scratch.write("m.json", #"[{"role": "user", "content": "hi"}]"#)
        let off = try runColocate(["chat", "--model", model, "--messages", messages, "--chat-template-kwargs", #"{"enable_thinking": false}"#])
        #expect(off.stdout == "hi /no_think", "\(off.stderr)")
        let on = try runColocate(["chat", "--model", model, "--messages", messages])
        #expect(on.stdout == "hi", "\(on.stderr)")
        let bad = try runColocate(["chat", "--model", model, "--messages", messages, "--chat-template-kwargs", "[1]"])
        #expect(bad.status != 0 && bad.stderr.contains("--chat-template-kwargs must be a JSON object"), "\(bad.stderr)")
    }

    @Test func aNamedTemplateIsChosen() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let model = try Self.chatModel(in: scratch, templates: "list")
        let messages = try scratch.write("m.json", #"{"messages": [{"role": "user", "content": "hi"}]}"#)
        let named = try runColocate(["chat", "--model", model, "--messages", messages, "--template", "shout"])
        #expect(named.stdout == "HI", "\(named.stderr)")
        let plain = try runColocate(["chat", "--model", model, "--messages", messages])
        #expect(plain.stdout == "<s>user: hi</s>", "\(plain.stderr)")
        let missing = try runColocate(["chat", "--model", model, "--messages", messages, "--template", "nope"])
        #expect(missing.status != 0 && missing.stderr.contains("no chat template named 'nope'; the model has: default, shout"), "\(missing.stderr)")
    }

    @Test func generateWithMessagesRunsTheRenderedPromptWithTheModelsDefaults() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        // temperature 0 from generation_config.json makes the default greedy.
        let model = try Self.chatModel(in: scratch, generation: #"{"eos_token_id": 2, "temperature": 0.0}"#)
        let messages = try scratch.write("m.json", #"[{"role": "user", "content": "weights"}]"#)
        let chat = try runColocate(["chat", "--model", model, "--messages", messages, "--add-generation-prompt", "--json"])
        let ids = try #require((try JSONSerialization.jsonObject(with: Data(chat.stdout.utf8)) as? [String: Any])?["ids"] as? [Int])
        let viaMessages = try runColocate(["generate", "--model", model, "--messages", messages, "--max-tokens", "4", "--json"])
        #expect(viaMessages.status == 0, "\(viaMessages.stderr)")
        let viaIds = try runColocate(["generate", "--model", model, "--prompt-ids", ids.map(String.init).joined(separator: ","),
                                      "--max-tokens", "4", "--temperature", "0", "--json"])
        #expect(viaIds.status == 0, "\(viaIds.stderr)")
        #expect(!viaMessages.stdout.isEmpty && viaMessages.stdout == viaIds.stdout)
    }

    @Test(arguments: [
        (["chat", "--model", "QWEN", "--messages", "/nonexistent/m.json"], "cannot read /nonexistent/m.json"),
        (["chat", "--model", "QWEN", "--messages", "NOTJSON"], "not valid JSON"),
        (["chat", "--model", "QWEN", "--messages", "NOTLIST"], "expected a JSON list of messages"),
        (["chat", "--model", "QWEN", "--messages", "GOOD", "--tools", "NOTJSON"], "not valid JSON"),
        (["chat", "--model", "/nonexistent", "--messages", "GOOD"], "the model has no chat template"),
        (["chat", "--model", "SP", "--messages", "TWOUSERS"], "chat template refused the conversation: Conversation roles must alternate"),
        (["generate", "--model", "SP", "--messages", "TWOUSERS"], "chat template refused the conversation"),
        (["generate", "--model", "SP", "--messages", "GOOD", "--prompt", "x"], "give exactly one of --prompt, --prompt-ids or --messages"),
    ])
    func badInputsAreOneLineErrors(args: [String], message: String) throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let fixtures = try colocateFixtures()
        let files = [
            "QWEN": fixtures + "/tokenizers/qwen2-style", "SP": fixtures + "/tokenizers/sp-style",
            "NOTJSON": try scratch.write("bad.json", "{not json"), "NOTLIST": try scratch.write("obj.json", #"{"role": "user"}"#),
            "GOOD": try scratch.write("good.json", #"[{"role": "user", "content": "hi"}]"#),
            "TWOUSERS": try scratch.write("two.json", #"[{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]"#),
        ]
        let r = try runColocate(args.map { files[$0] ?? $0 })
        #expect(r.status != 0)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("Error: ") && r.stderr.contains(message), "\(r.stderr)")
    }
}

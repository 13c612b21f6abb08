import ArgumentParser
import Compute
import Foundation
import Models

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a Hugging Face model directory (OPT, Llama, Qwen2).")

    @Option(help: "Model directory (config.json, model.safetensors, tokenizer.json).")
    var model: String
    @Option(help: "Prompt text (needs tokenizer.json in the model directory).")
    var prompt: String?
    @Option(help: "Prompt as token ids, comma-separated (e.g. 2,31414,232).")
    var promptIds: String?
    @Option(help: "JSON file of chat messages; the prompt is the model's chat template applied to them, with the generation prompt.")
    var messages: String?
    @Option(help: "JSON file of tool schemas for the chat template (with --messages).")
    var tools: String?
    @Option(help: "Name of the chat template when the model has several (with --messages).")
    var template: String?
    @Option(help: "JSON object of extra chat template variables (with --messages), e.g. '{\"enable_thinking\": false}'.")
    var chatTemplateKwargs: String?
    // `.unconditional`: `--max-tokens -1` is a value to reject with a reason, not a missing value.
    @Option(parsing: .unconditional, help: "New tokens to generate at most (default: generation_config.json's max_new_tokens, else 16).")
    var maxTokens: Int?
    @Option(help: "Sampling temperature; 0 is greedy (default: generation_config.json's, else 1).")
    var temperature: Float?
    @Option(help: "Nucleus sampling probability mass, 1 = off (default: generation_config.json's, else 1).")
    var topP: Float?
    @Option(parsing: .unconditional, help: "Keep only the K most likely tokens, -1 = off (default: generation_config.json's, else -1).")
    var topK: Int?
    @Option(help: "Sampler seed (reproducible output).")
    var seed: UInt64?
    @Option(help: "Completions per prompt.")
    var n: Int = 1
    @Flag(help: "Do not stop at the end-of-sequence token.")
    var ignoreEos = false
    @Option(help: "Weight dtype: f32, bf16 or f16.")
    var dtype: String = "f32"
    @Option(help: "Device: cpu or cuda.")
    var device: String = "cpu"
    @Flag(help: "Print {\"outputs\":[{\"ids\":[...],\"text\":\"...\",\"logprobs\":[...]}]}.")
    var json = false

    func validate() throws {
        if let maxTokens, maxTokens < 1 { throw CLIError("--max-tokens must be at least 1, got \(maxTokens)") }
    }

    func run() async throws {
        try CLIParse.requireUTF8Arguments()
        let backend = try Backends.make(device: device)
        let weightType = try CLIParse.dtype(dtype)
        guard [prompt != nil, promptIds != nil, messages != nil].filter({ $0 }).count == 1 else {
            throw CLIError("give exactly one of --prompt, --prompt-ids or --messages")
        }
        if messages == nil, tools != nil || template != nil || chatTemplateKwargs != nil {
            throw CLIError("--tools, --template and --chat-template-kwargs need --messages")
        }
        // Render first: a bad conversation fails before the weights load.
        let chatPrompt = try messages.map { path in
            try ChatInput.render(model: model, messagesPath: path, toolsPath: tools, addGenerationPrompt: true, template: template,
                                 kwargs: chatTemplateKwargs)
        }
        let local = try LocalModel(directory: model, dtype: weightType, backend: backend)
        let ids: [Int32]
        if let text = prompt ?? chatPrompt {
            guard let tokenizer = local.tokenizer else { throw CLIError("\(model) has no tokenizer.json; pass --prompt-ids instead") }
            // Chat prompts carry their special tokens in the text; none are added (as vLLM). A plain
            // prompt gets the post-processor's (a Llama-3 BOS), as vLLM's raw prompts do.
            ids = tokenizer.encode(text, addSpecialTokens: chatPrompt == nil)
            guard !ids.isEmpty else { throw CLIError("the prompt is empty") }
        } else {
            ids = try CLIParse.ids(promptIds!)
        }
        // generation_config.json's sampling fields are the defaults; options given here win.
        var params = local.defaultSamplingParams
        if let maxTokens { params.maxTokens = maxTokens }
        if let temperature { params.temperature = temperature }
        if let topP { params.topP = topP }
        if let topK { params.topK = topK }
        params.seed = seed
        params.n = n
        params.ignoreEOS = ignoreEos
        let completions = try local.generate(prompts: [ids], params: params)[0]
        var outputs: [[String: Any]] = []
        for c in completions {
            let text = try local.tokenizer?.decode(c.tokenIds)
            if json {
                outputs.append(["ids": c.tokenIds.map { Int($0) }, "text": text ?? NSNull(),
                                "logprobs": c.logprobs.map { Double($0) }, "finish_reason": c.finishReason.rawValue])
            } else {
                print(text ?? c.tokenIds.map(String.init).joined(separator: ","))
            }
        }
        if json { try CLIOutput.printJSON(["outputs": outputs]) }
    }
}

struct Logits: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute logits of every position for int64 input_ids [B,T] from a safetensors file.")

    @Option(help: "Model directory.")
    var model: String
    @Option(help: "Input safetensors with int64 `input_ids` [batch, tokens].")
    var input: String
    @Option(help: "Output safetensors; receives f32 `logits` [batch, tokens, vocab].")
    var output: String
    @Option(help: "Weight dtype: f32, bf16 or f16.")
    var dtype: String = "f32"
    @Option(help: "Device: cpu or cuda.")
    var device: String = "cpu"

    func run() async throws {
        try SafeTensorsWriter.checkDestination(output)  // before any work: never onto a device or link
        let backend = try Backends.make(device: device)
        let file = try SafeTensorsFile(path: input)
        guard let info = file.info("input_ids") else { throw CLIError("\(input) has no tensor input_ids") }
        guard info.shape.count == 2, info.dtype == .i64 || info.dtype == .i32 else {
            throw CLIError("input_ids must be int64 [batch, tokens], got \(info.dtype) \(info.shape)")
        }
        let local = try LocalModel(directory: model, dtype: try CLIParse.dtype(dtype), backend: backend)
        let flat = try file.tensor("input_ids").integers()
        let t = info.shape[1], vocab = local.config.vocabSize
        // Checked as stored (64-bit): an id is reported as it is, not clamped to 32 bits.
        for (i, id) in flat.enumerated() where id < 0 || id >= vocab {
            throw CLIError("input_ids[\(i / max(t, 1))][\(i % max(t, 1))] is \(id), outside the vocabulary (size \(vocab))")
        }
        let rows = (0..<info.shape[0]).map { r in flat[r * t..<(r + 1) * t].map { Int32($0) } }
        let logits = try local.logits(inputIds: rows)
        try SafeTensorsWriter.write([(name: "logits", tensor: logits)], to: output)
    }
}

struct InitModel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-model",
        abstract: "Write a randomly initialised model in Hugging Face layout (config.json, model.safetensors, tokenizer.json).")

    @Option(help: "Architecture: opt, llama or qwen2.")
    var arch: String
    @Option(help: "Shape preset (see --help of the architecture: opt-125m, opt-tiny, llama-tiny, qwen2-tiny, …).")
    var preset: String
    @Option(help: "Output directory.")
    var out: String
    @Option(help: "Random seed.")
    var seed: UInt64 = 0
    @Option(help: "Weight dtype: f32, bf16 or f16.")
    var dtype: String = "f32"

    func run() async throws {
        guard let architecture = ModelConfig.Architecture(rawValue: arch) else {
            throw CLIError("unknown architecture '\(arch)' (supported: opt, llama, qwen2)")
        }
        let p = try ModelPreset.named(preset)
        guard p.architecture == architecture.rawValue else {
            throw CLIError("preset '\(preset)' is \(p.architecture), not \(arch) (\(arch) presets: \(ModelPreset.names(for: architecture).joined(separator: ", ")))")
        }
        var st = stat()
        if stat(out, &st) == 0 && (st.st_mode & S_IFMT) != S_IFDIR {
            throw CLIError("\(out) exists and is not a directory; --out names the directory to write the model into")
        }
        try ModelDirectory.write(preset: p, to: out, seed: seed, dtype: try CLIParse.dtype(dtype))
        print("wrote \(preset) (\(arch)) to \(out)")
    }
}

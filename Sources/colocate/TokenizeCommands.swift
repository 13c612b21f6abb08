import ArgumentParser
import Foundation
import Models

/// A user-facing failure of a CLI command: printed by ArgumentParser as `Error: <message>`, exit 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Where the tokenizer comes from: `--model DIR` (a model directory) or `--tokenizer PATH` (a
/// `tokenizer.json`, or a directory holding one). `tokenizer_config.json` beside it is applied.
struct TokenizerOption: ParsableArguments {
    @Option(name: .long, help: "A model directory containing tokenizer.json (and tokenizer_config.json).")
    var model: String?

    @Option(name: .long, help: "Path to a tokenizer.json, or a directory containing one.")
    var tokenizer: String?

    func load() throws -> Tokenizer {
        switch (model, tokenizer) {
        case (let model?, nil): return try Tokenizer(modelDirectory: model)
        case (nil, let tokenizer?): return try Tokenizer(path: tokenizer)
        default: throw CommandFailure("give exactly one of --model DIR or --tokenizer PATH")
        }
    }
}

/// `colocate tokenize`: text → token ids.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text into token ids with a Hugging Face tokenizer.json (BPE: GPT-2, Qwen2, Llama-3, Llama-2/Mistral).")

    @OptionGroup var options: TokenizerOption

    @Option(name: .long, help: "The text to encode.")
    var text: String

    @Flag(name: .long, help: "Print {\"ids\":[...]} instead of comma-separated ids.")
    var json = false

    @Flag(name: .long, help: "Leave out the special tokens the post-processor adds (such as BOS).")
    var noSpecialTokens = false

    func run() throws {
        let ids = try options.load().encode(text, addSpecialTokens: !noSpecialTokens)
        let list = ids.map(String.init).joined(separator: ",")
        print(json ? "{\"ids\":[\(list)]}" : list)
    }
}

/// `colocate detokenize`: token ids → text.
struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode token ids into text with a Hugging Face tokenizer.json.")

    @OptionGroup var options: TokenizerOption

    @Option(name: .long, help: "Comma-separated token ids, e.g. 1,2,3.")
    var ids: String

    @Flag(name: .long, help: "Leave out special tokens such as <s> and </s>.")
    var skipSpecialTokens = false

    func run() throws {
        let tokenizer = try options.load()
        print(try tokenizer.decode(try Self.parseIds(ids), skipSpecialTokens: skipSpecialTokens))
    }

    static func parseIds(_ text: String) throws -> [Int32] {
        let trimmed = text.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        if trimmed == [""] { return [] }
        return try trimmed.map { field in
            guard let id = Int32(field) else { throw CommandFailure("invalid token id '\(field)' in --ids (expected integers separated by commas)") }
            return id
        }
    }
}

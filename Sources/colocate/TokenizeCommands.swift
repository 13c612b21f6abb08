import ArgumentParser
import Foundation
import Models

/// A user-facing failure of a CLI command: printed by ArgumentParser as `Error: <message>`, exit 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// `--tokenizer` accepts a `tokenizer.json` or a model directory holding one.
struct TokenizerOption: ParsableArguments {
    @Option(name: .long, help: "Path to a tokenizer.json, or a model directory containing one.")
    var tokenizer: String

    func load() throws -> Tokenizer {
        var path = tokenizer
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            path += "/tokenizer.json"
        }
        return try Tokenizer(path: path)
    }
}

/// `colocate tokenize`: text → token ids.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text into token ids with a Hugging Face tokenizer.json (byte-level BPE).")

    @OptionGroup var options: TokenizerOption

    @Option(name: .long, help: "The text to encode.")
    var text: String

    @Flag(name: .long, help: "Print {\"ids\":[...]} instead of comma-separated ids.")
    var json = false

    func run() throws {
        let ids = try options.load().encode(text)
        let list = ids.map(String.init).joined(separator: ",")
        print(json ? "{\"ids\":[\(list)]}" : list)
    }
}

/// `colocate detokenize`: token ids → text.
struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode token ids into text with a Hugging Face tokenizer.json (byte-level BPE).")

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

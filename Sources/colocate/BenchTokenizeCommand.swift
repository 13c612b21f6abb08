import ArgumentParser
import Compute
import Foundation
import Models

/// `colocate bench tokenize`: single-thread encode speed (tokens/s) of each tokenizer on a few MB of
/// mixed text — English prose, code, Japanese/Chinese, emoji, numbers, accented and decomposed
/// letters — generated from a seed, so that `bench/anchor_tokenizers.py` (Hugging Face tokenizers)
/// can run on the very same text (`--write-text`) and both print a checksum of the ids.
struct BenchTokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Measure single-thread tokenizer encode speed on mixed text (prose, code, CJK, emoji).")

    @Option(help: "Tokenizers (tokenizer.json files or directories), comma-separated. Default: the families in shared/fixtures/tokenizers and the byte-level one in shared/fixtures/tokenizer.")
    var tokenizers: String?
    @Option(help: "Size of the generated text in MB (10^6 bytes of UTF-8).")
    var megabytes = 4.0
    @Option(help: "Seed of the generated text.")
    var seed: UInt64 = 1
    @Option(help: "Passes over the text per tokenizer (the fastest is reported; the first also fills the BPE cache).")
    var passes = 3
    @Option(help: "Write the documents to this file (separated by U+001E) and use them.")
    var writeText: String?
    @Option(help: "Read the documents from this file (separated by U+001E) instead of generating them.")
    var readText: String?
    @Flag(help: "Encode without the post-processor's special tokens.")
    var noSpecialTokens = false

    func run() throws {
        guard megabytes > 0 && megabytes <= 1000 else { throw CLIError("--megabytes must be in (0, 1000]") }
        guard passes >= 1 && passes <= 100 else { throw CLIError("--passes must be in 1...100") }
        let documents: [String]
        if let readText {
            guard let data = FileManager.default.contents(atPath: readText), let text = String(data: data, encoding: .utf8) else {
                throw CLIError("\(readText): cannot read UTF-8 text")
            }
            documents = text.split(separator: "\u{1E}", omittingEmptySubsequences: false).map(String.init)
        } else {
            documents = MixedText.documents(bytes: Int(megabytes * 1e6), seed: seed)
        }
        if let writeText {
            guard FileManager.default.createFile(atPath: writeText, contents: Data(documents.joined(separator: "\u{1E}").utf8)) else {
                throw CLIError("\(writeText): cannot write")
            }
        }
        let paths = try tokenizers.map { $0.split(separator: ",").map(String.init) } ?? Self.fixtureTokenizers()
        let bytes = documents.reduce(0) { $0 + $1.utf8.count }
        print("bench tokenize: \(documents.count) documents, \(String(format: "%.2f", Double(bytes) / 1e6)) MB, single thread, best of \(passes) passes")
        for path in paths {
            let tokenizer = try Tokenizer(path: path)
            var best = Double.infinity, bestCPU = Double.infinity
            var count = 0
            var checksum: UInt64 = 0
            for _ in 0..<passes {
                let start = ContinuousClock.now
                let startCPU = Self.processCPUSeconds()
                var n = 0
                var hash: UInt64 = 0xcbf2_9ce4_8422_2325
                for doc in documents {
                    let ids = tokenizer.encode(doc, addSpecialTokens: !noSpecialTokens)
                    n += ids.count
                    for id in ids { hash = (hash ^ UInt64(UInt32(bitPattern: id))) &* 0x100_0000_01b3 }
                }
                best = min(best, (ContinuousClock.now - start).inSeconds)
                bestCPU = min(bestCPU, Self.processCPUSeconds() - startCPU)
                count = n
                checksum = hash
            }
            let name = URL(fileURLWithPath: path).lastPathComponent == "tokenizer.json"
                ? URL(fileURLWithPath: path).deletingLastPathComponent().lastPathComponent : URL(fileURLWithPath: path).lastPathComponent
            print("  \(name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(String(format: "%10.0f tokens/s  %6.2f MB/s  %9d tokens  %.3f s  (CPU time: %10.0f tokens/s)", Double(count) / best, Double(bytes) / best / 1e6, count, best, Double(count) / bestCPU))  ids fnv1a \(String(checksum, radix: 16))")
        }
    }

    /// CPU time of the process: on a shared machine wall time also counts the time other work ran.
    static func processCPUSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// `shared/fixtures/tokenizers/*` and `shared/fixtures/tokenizer`, beside the current directory or
    /// a folder above it.
    static func fixtureTokenizers() throws -> [String] {
        var dir = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        while true {
            for base in [dir.appendingPathComponent("shared/fixtures"), dir.deletingLastPathComponent().appendingPathComponent("shared/fixtures")] {
                let families = ["tokenizers/qwen2-style", "tokenizers/llama3-style", "tokenizers/sp-style", "tokenizer"]
                    .map { base.appendingPathComponent($0).path }
                    .filter { FileManager.default.fileExists(atPath: $0 + "/tokenizer.json") }
                if !families.isEmpty { return families }
            }
            if dir.path == "/" { break }
            dir = dir.deletingLastPathComponent()
        }
        throw CLIError("no shared/fixtures tokenizers found above the current directory: pass --tokenizers")
    }
}

/// Deterministic mixed text: documents of prose, code, CJK, emoji and numbers.
enum MixedText {
    static let words = """
        the of and to in is that for it as with was on be by this are from at or an have not which but \
        model training weights engine gradient policy reward sample batch token sequence layer attention \
        memory device kernel tensor update step learning rate value function network output input result \
        café naïve résumé Zürich São Paulo coöperate déjà vu Ångström façade piñata jalapeño \
        I'm you're we'll they've don't can't it's isn't DON'T WE'LL Hello World GPU CPU API URL
        """.split(separator: " ").map(String.init)
    static let identifiers = "x y i j n count total buffer offset index result value tokens ids batch_size max_len self config".split(separator: " ").map(String.init)
    static let cjk: [ClosedRange<UInt32>] = [0x4E00...0x4FFF, 0x3041...0x3093, 0x30A1...0x30F3, 0xAC00...0xAC7F]
    static let emoji: [ClosedRange<UInt32>] = [0x1F600...0x1F64F, 0x1F300...0x1F3FF, 0x2600...0x26FF]

    static func documents(bytes target: Int, seed: UInt64) -> [String] {
        var rng = SplitMix64(seed: seed)
        var docs: [String] = []
        var total = 0
        while total < target {
            var doc = ""
            let parts = Int.random(in: 1...6, using: &rng)
            for _ in 0..<parts {
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<4: doc += prose(&rng)
                case 4..<6: doc += code(&rng)
                case 6..<8: doc += asian(&rng)
                case 8: doc += numbers(&rng)
                default: doc += emojiLine(&rng)
                }
                doc += Bool.random(using: &rng) ? "\n\n" : " "
            }
            total += doc.utf8.count
            docs.append(doc)
        }
        return docs
    }

    static func scalar(_ ranges: [ClosedRange<UInt32>], _ rng: inout SplitMix64) -> String {
        let r = ranges.randomElement(using: &rng)!
        return String(Unicode.Scalar(UInt32.random(in: r, using: &rng))!)
    }

    static func prose(_ rng: inout SplitMix64) -> String {
        var s = ""
        for _ in 0..<Int.random(in: 2...8, using: &rng) {
            var sentence = (0..<Int.random(in: 4...18, using: &rng)).map { _ in words.randomElement(using: &rng)! }
            sentence[0] = sentence[0].prefix(1).uppercased() + sentence[0].dropFirst()
            if Int.random(in: 0..<4, using: &rng) == 0 { sentence.insert("e\u{301}t\u{E9}", at: sentence.count / 2) }  // decomposed é
            s += sentence.joined(separator: Int.random(in: 0..<8, using: &rng) == 0 ? ", " : " ")
            s += [".", ".", "!", "?", "...", ";"].randomElement(using: &rng)! + " "
        }
        return s
    }

    static func code(_ rng: inout SplitMix64) -> String {
        var s = "```python\n"
        for _ in 0..<Int.random(in: 2...10, using: &rng) {
            let indent = String(repeating: "    ", count: Int.random(in: 0...3, using: &rng))
            let a = identifiers.randomElement(using: &rng)!, b = identifiers.randomElement(using: &rng)!
            switch Int.random(in: 0..<5, using: &rng) {
            case 0: s += "\(indent)def \(a)_\(b)(\(a), \(b)=\(Int.random(in: 0...999, using: &rng))):\n"
            case 1: s += "\(indent)\(a) = \(b)[\(a) + 1:] * 0.5  # \(words.randomElement(using: &rng)!)\n"
            case 2: s += "\(indent)for \(a) in range(len(\(b))):\n"
            case 3: s += "\(indent)return {\"\(a)\": \(b), '\(b)': [\(a), None]}\n"
            default: s += "\(indent)if \(a) != \(b) and not \(a).startswith(\"<|\"):\n\t\(indent)pass\n"
            }
        }
        return s + "```"
    }

    static func asian(_ rng: inout SplitMix64) -> String {
        var s = ""
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            for _ in 0..<Int.random(in: 5...30, using: &rng) { s += scalar(cjk, &rng) }
            s += ["。", "、", "！", "？", "，"].randomElement(using: &rng)!
        }
        return s
    }

    static func numbers(_ rng: inout SplitMix64) -> String {
        (0..<Int.random(in: 3...12, using: &rng)).map { _ in
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: String(Int.random(in: 0...9_999_999, using: &rng))
            case 1: String(format: "%.4f", Double.random(in: -1000...1000, using: &rng))
            default: "2026-\(Int.random(in: 10...12, using: &rng))-\(Int.random(in: 10...28, using: &rng))"
            }
        }.joined(separator: " ")
    }

    static func emojiLine(_ rng: inout SplitMix64) -> String {
        var s = words.randomElement(using: &rng)!
        for _ in 0..<Int.random(in: 1...6, using: &rng) {
            s += Bool.random(using: &rng) ? " " : ""
            s += scalar(emoji, &rng)
        }
        return s + " " + words.randomElement(using: &rng)!
    }
}

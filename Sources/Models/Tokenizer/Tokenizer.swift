import Foundation

/// A Hugging Face `tokenizer.json` with a BPE model, run as Hugging Face tokenizers runs it: added
/// tokens are found in the raw text (non-normalized ones) or in the normalized text (normalized ones);
/// the text between them is normalized, pre-tokenized and encoded by BPE; the post-processor adds
/// special tokens; `decode` maps ids to tokens and runs the decoder. This covers GPT-2/OPT, Qwen2,
/// Llama-3 and the SentencePiece-style BPE of Llama-2/Mistral. Components it does not implement are
/// refused by name rather than tokenizing differently from Hugging Face.
///
/// `tokenizer_config.json` beside the file, when present, gives the BOS/EOS tokens, `add_bos_token` /
/// `add_eos_token` (used where the post-processor adds no token) and the chat template.
public final class Tokenizer: Sendable {
    /// An entry of `added_tokens`: matched in the raw text before anything else.
    public struct AddedToken: Sendable, Hashable {
        public var id: Int32
        public var content: String
        public var special: Bool
        /// Also take the whitespace before / after a match.
        public var lstrip: Bool
        public var rstrip: Bool
        /// Match only when not inside a word.
        public var singleWord: Bool
        public var normalized: Bool

        public init(id: Int32, content: String, special: Bool, lstrip: Bool = false, rstrip: Bool = false,
                    singleWord: Bool = false, normalized: Bool = false) {
            self.id = id
            self.content = content
            self.special = special
            self.lstrip = lstrip
            self.rstrip = rstrip
            self.singleWord = singleWord
            self.normalized = normalized
        }
    }

    /// Ids above this are refused: no real vocabulary comes close, and a table of them would not fit.
    public static let maxTokenId = 1 << 24

    /// The BPE vocabulary (token → id), without added tokens that are not in it.
    public let vocabulary: [String: Int32]
    /// The merges, by rank.
    public let merges: [(String, String)]
    public let addedTokens: [AddedToken]
    /// One past the largest id of the vocabulary and the added tokens.
    public let vocabSize: Int
    /// ByteLevel `add_prefix_space`: a space is put before text that does not start with one.
    public let addPrefixSpace: Bool
    /// ByteLevel `use_regex`: split with GPT-2's pattern (else each text segment is one word).
    public let useRegex: Bool
    /// `tokenizer_config.json`, when one was loaded.
    public let config: TokenizerConfig?

    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor?
    let decoder: TokenDecoder?
    let model: BPEModel
    private let tokens: TokenTable
    private let specialIds: Set<Int32>
    private let addedByContent: [String: AddedToken]
    private let rawAddedTokens: AddedTokenMatcher
    private let normalizedAddedTokens: AddedTokenMatcher
    /// Special tokens from `add_bos_token` / `add_eos_token`, where no post-processor adds any.
    private let configPrefix: [Int32]
    private let configSuffix: [Int32]

    /// Loads a `tokenizer.json`, or the one in a model directory, with the `tokenizer_config.json`
    /// (and `chat_template.jinja`) beside it when there is one.
    public convenience init(path: String) throws(TokenizerError) {
        var file = path
        var directory = (path as NSString).deletingLastPathComponent
        if FileIO.isDirectory(path) {
            directory = path
            file = path + "/tokenizer.json"
        }
        if directory.isEmpty { directory = "." }
        let bytes = try Self.readRegularFile(file)
        let config = try TokenizerConfig.load(directory: directory)
        do {
            try self.init(json: bytes, config: config)
        } catch {
            throw TokenizerError(error.kind, "\(file): \(error.message)")
        }
    }

    /// Loads the tokenizer of a model directory (`tokenizer.json`, `tokenizer_config.json`).
    public convenience init(modelDirectory: String) throws(TokenizerError) {
        guard FileIO.isDirectory(modelDirectory) else {
            throw TokenizerError(.io, "\(modelDirectory): not a directory")
        }
        try self.init(path: modelDirectory)
    }

    /// Reads a file after checking that it is a regular file, so that a FIFO or device is refused
    /// before `open` could block on it.
    static func readRegularFile(_ path: String) throws(TokenizerError) -> [UInt8] {
        // FileIO opens without blocking and refuses anything but a regular file, naming what it is.
        do {
            return try FileIO.readFile(path)
        } catch {
            throw TokenizerError(.io, "\(error)")
        }
    }

    public convenience init(json: Data, config: TokenizerConfig? = nil) throws(TokenizerError) {
        try self.init(json: [UInt8](json), config: config)
    }

    public init(json bytes: [UInt8], config: TokenizerConfig? = nil) throws(TokenizerError) {
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes)
        } catch {
            throw TokenizerError(.invalidFile, "not valid JSON: \(error)")
        }
        guard json.objectMembers != nil else { throw TokenizerError(.invalidFile, "not a JSON object") }
        self.config = config

        // Components; anything not implemented is refused by name.
        func component(_ key: String) -> JSONValue? {
            guard let v = json[key], !v.isNull else { return nil }
            return v
        }
        normalizer = try component("normalizer").map { (v) throws(TokenizerError) in try Normalizer(json: v) }
        preTokenizer = try component("pre_tokenizer").map { (v) throws(TokenizerError) in try PreTokenizer(json: v) }
        postProcessor = try component("post_processor").map { (v) throws(TokenizerError) in try PostProcessor(json: v) }
        decoder = try component("decoder").map { (v) throws(TokenizerError) in try TokenDecoder(json: v) }
        let byteLevel = preTokenizer?.byteLevelOptions
        addPrefixSpace = byteLevel?.addPrefixSpace ?? false
        useRegex = byteLevel?.useRegex ?? false
        guard let modelJSON = json["model"], modelJSON.objectMembers != nil else {
            throw TokenizerError(.invalidFile, "no model")
        }
        let modelType = modelJSON["type"]?.stringValue ?? "BPE"
        guard modelType == "BPE" else {
            throw TokenizerError(.unsupported, "unsupported model type \(modelType) (supported: BPE)")
        }
        model = try BPEModel(json: modelJSON)
        vocabulary = model.vocabulary
        merges = model.mergeList

        // Added tokens.
        var added: [AddedToken] = []
        var addedById: [Int32: AddedToken] = [:]
        for entry in json["added_tokens"]?.arrayValue ?? [] {
            guard let content = entry["content"]?.stringValue, let rawId = entry["id"]?.intValue else {
                throw TokenizerError(.invalidFile, "added_tokens entry \(entry.serialized()) lacks an id or content")
            }
            guard rawId >= 0 && rawId < Self.maxTokenId else {
                throw TokenizerError(.invalidFile, "added token \(content.debugDescription) has id \(rawId), outside 0..<\(Self.maxTokenId)")
            }
            let token = AddedToken(
                id: Int32(rawId), content: content, special: entry["special"]?.boolValue ?? false,
                lstrip: entry["lstrip"]?.boolValue ?? false, rstrip: entry["rstrip"]?.boolValue ?? false,
                singleWord: entry["single_word"]?.boolValue ?? false, normalized: entry["normalized"]?.boolValue ?? false)
            if let other = addedById[token.id], other.content != content {
                throw TokenizerError(.invalidFile, "added_tokens give id \(rawId) to both \(other.content.debugDescription) and \(content.debugDescription)")
            }
            addedById[token.id] = token
            added.append(token)
        }
        addedTokens = added
        tokens = TokenTable(vocabulary: vocabulary, added: added)
        vocabSize = tokens.count
        specialIds = Set(added.filter(\.special).map(\.id))
        var byContent: [String: AddedToken] = [:]
        for t in added where byContent[t.content] == nil { byContent[t.content] = t }
        addedByContent = byContent
        rawAddedTokens = AddedTokenMatcher(added.filter { !$0.normalized }.map { ($0.content, $0) })
        let normalizer = self.normalizer
        normalizedAddedTokens = AddedTokenMatcher(added.filter(\.normalized).map { t in
            (normalizer?.normalize(t.content) ?? t.content, t)
        })

        // add_bos_token / add_eos_token, where the post-processor adds nothing.
        var prefix: [Int32] = [], suffix: [Int32] = []
        if postProcessor?.addsTokens != true, let config {
            if config.addBosToken == true {
                guard let bos = config.bosToken, let id = byContent[bos]?.id ?? vocabulary[bos] else {
                    throw TokenizerError(.invalidFile, "tokenizer_config sets add_bos_token but bos_token \(config.bosToken?.debugDescription ?? "null") is not a token")
                }
                prefix = [id]
            }
            if config.addEosToken == true {
                guard let eos = config.eosToken, let id = byContent[eos]?.id ?? vocabulary[eos] else {
                    throw TokenizerError(.invalidFile, "tokenizer_config sets add_eos_token but eos_token \(config.eosToken?.debugDescription ?? "null") is not a token")
                }
                suffix = [id]
            }
        }
        configPrefix = prefix
        configSuffix = suffix
    }

    /// The id of a token of the vocabulary or an added token.
    public func id(of token: String) -> Int32? {
        addedByContent[token]?.id ?? vocabulary[token]
    }

    /// The token (the vocabulary's form, e.g. byte-level `Ġworld`, or an added token's content) of `id`.
    public func token(of id: Int32) -> String? {
        tokens[id]
    }

    /// Whether `id` is an added token marked special.
    public func isSpecial(_ id: Int32) -> Bool { specialIds.contains(id) }

    /// Ids of the special added tokens.
    public var specialTokenIds: Set<Int32> { specialIds }

    /// The id of the config's `bos_token`, when it has one that is a token.
    public var bosTokenId: Int32? { config?.bosToken.flatMap { id(of: $0) } }

    /// The id of the config's `eos_token`, when it has one that is a token.
    public var eosTokenId: Int32? { config?.eosToken.flatMap { id(of: $0) } }

    // MARK: Encoding

    /// Token ids of `text`, as Hugging Face's `encode(text, add_special_tokens=…)`: added tokens where
    /// they occur, the pipeline in between, and with `addSpecialTokens` the post-processor's tokens
    /// (or the config's `add_bos_token` / `add_eos_token` where the post-processor adds none).
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int32] {
        var ids: [Int32] = []
        let utf8 = Array(text.utf8)
        var start = 0
        for match in rawAddedTokens.matches(in: utf8) {
            encodeSegment(utf8[start..<match.range.lowerBound], atStart: start == 0, into: &ids)
            ids.append(match.token.id)
            start = match.range.upperBound
        }
        encodeSegment(utf8[start...], atStart: start == 0, into: &ids)
        guard addSpecialTokens else { return ids }
        if let postProcessor, postProcessor.addsTokens { return postProcessor.process(ids) }
        return configPrefix.isEmpty && configSuffix.isEmpty ? ids : configPrefix + ids + configSuffix
    }

    /// A stretch of raw text between added tokens: normalized, then split at normalized added tokens.
    private func encodeSegment(_ bytes: ArraySlice<UInt8>, atStart: Bool, into ids: inout [Int32]) {
        guard !bytes.isEmpty else { return }
        // Segment boundaries are match boundaries of whole UTF-8 sequences, so this never repairs.
        var text = String(decoding: bytes, as: UTF8.self)
        if let normalizer { text = normalizer.normalize(text) }
        guard !normalizedAddedTokens.isEmpty else {
            encodeNormalized(text, atStart: atStart, into: &ids)
            return
        }
        let utf8 = Array(text.utf8)
        var start = 0
        for match in normalizedAddedTokens.matches(in: utf8) {
            encodeNormalized(String(decoding: utf8[start..<match.range.lowerBound], as: UTF8.self), atStart: atStart && start == 0, into: &ids)
            ids.append(match.token.id)
            start = match.range.upperBound
        }
        encodeNormalized(String(decoding: utf8[start...], as: UTF8.self), atStart: atStart && start == 0, into: &ids)
    }

    /// Normalized text without added tokens: pre-tokenized, each piece encoded by the model.
    private func encodeNormalized(_ text: String, atStart: Bool, into ids: inout [Int32]) {
        guard !text.isEmpty else { return }
        var pieces = Pieces(Array(text.unicodeScalars), firstAtStart: atStart)
        preTokenizer?.apply(&pieces)
        if pieces.byteLevel {
            var word: [UInt8] = []
            for r in pieces.ranges {
                word.removeAll(keepingCapacity: true)
                for s in pieces.scalars[r] {
                    if s.value < 0x80 { word.append(UInt8(s.value)) } else { word.append(contentsOf: UTF8.encode(s)!) }
                }
                model.encode(bytes: word, into: &ids)
            }
        } else {
            for r in pieces.ranges {
                model.encode(word: String(scalars: pieces.scalars[r]), into: &ids)
            }
        }
    }

    // MARK: Decoding

    /// The text of `ids`, as Hugging Face's `decode`: each id's token (special ones left out with
    /// `skipSpecialTokens`), run through the decoder (ByteLevel: bytes decoded as UTF-8 with invalid
    /// sequences replaced by U+FFFD), or joined by spaces without one. An id with no token is an error.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) throws(TokenizerError) -> String {
        var pieces: [String] = []
        pieces.reserveCapacity(ids.count)
        for id in ids {
            guard let token = tokens[id] else {
                if id >= 0 && Int(id) < vocabSize {
                    throw TokenizerError(.idOutOfRange, "token id \(id) has no token in the vocabulary")
                }
                throw TokenizerError(.idOutOfRange, "token id \(id) is outside the vocabulary (0..<\(vocabSize))")
            }
            if skipSpecialTokens && specialIds.contains(id) { continue }
            pieces.append(token)
        }
        guard let decoder else { return pieces.joined(separator: " ") }
        return decoder.decode(pieces)
    }
}

/// Id → token: an array for the dense ids, a dictionary for the rest, so that a stray huge id does not
/// size the table.
private struct TokenTable: Sendable {
    private let dense: [String?]
    private let sparse: [Int32: String]
    /// One past the largest id.
    let count: Int

    init(vocabulary: [String: Int32], added: [Tokenizer.AddedToken]) {
        var all: [Int32: String] = [:]
        for (token, id) in vocabulary { all[id] = token }
        for t in added { all[t.id] = t.content }  // an added token's content wins, as in Hugging Face
        let limit = 2 * all.count + 1024
        var dense = [String?](repeating: nil, count: min(limit, Int(all.keys.max() ?? -1) + 1))
        var sparse: [Int32: String] = [:]
        for (id, token) in all {
            if Int(id) < dense.count { dense[Int(id)] = token } else { sparse[id] = token }
        }
        self.dense = dense
        self.sparse = sparse
        count = Int(all.keys.max() ?? -1) + 1
    }

    subscript(id: Int32) -> String? {
        if id >= 0 && Int(id) < dense.count { return dense[Int(id)] }
        return sparse[id]
    }
}

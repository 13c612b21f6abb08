import Foundation

/// A Hugging Face `tokenizer.json` of the byte-level BPE family (GPT-2, OPT, RoBERTa and the tokenizers
/// `colocate init-model` writes): added tokens, the ByteLevel pre-tokenizer with GPT-2's split pattern,
/// a BPE model and the ByteLevel decoder. Other components are refused with a clear error rather than
/// tokenizing differently from Hugging Face.
///
/// `encode` adds no special tokens (the ByteLevel post-processor adds none).
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

    private let idToToken: [String?]
    private let specialIds: Set<Int32>
    private let addedByContent: [String: AddedToken]
    /// Added tokens by the first byte of their content, longest first.
    private let addedByFirstByte: [UInt8: [(bytes: [UInt8], token: AddedToken)]]
    private let bpe: BPEModel

    public convenience init(path: String) throws(TokenizerError) {
        let bytes: [UInt8]
        do {
            bytes = try FileIO.readFile(path)
        } catch {
            throw TokenizerError(.io, "\(error)")
        }
        do {
            try self.init(json: bytes)
        } catch {
            throw TokenizerError(error.kind, "\(path): \(error.message)")
        }
    }

    public convenience init(json: Data) throws(TokenizerError) {
        try self.init(json: [UInt8](json))
    }

    public init(json bytes: [UInt8]) throws(TokenizerError) {
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes)
        } catch {
            throw TokenizerError(.invalidFile, "not valid JSON: \(error)")
        }
        guard json.objectMembers != nil else { throw TokenizerError(.invalidFile, "not a JSON object") }

        // Components: only what byte-level BPE needs; anything that would change the result is refused.
        if let normalizer = json["normalizer"], !normalizer.isNull {
            throw TokenizerError(.unsupported, "unsupported normalizer \(normalizer["type"]?.stringValue ?? normalizer.typeName) (supported: none)")
        }
        guard let pre = json["pre_tokenizer"], pre["type"]?.stringValue == "ByteLevel" else {
            let type = json["pre_tokenizer"]?["type"]?.stringValue ?? "none"
            throw TokenizerError(.unsupported, "unsupported pre_tokenizer \(type) (supported: ByteLevel)")
        }
        addPrefixSpace = pre["add_prefix_space"]?.boolValue ?? false
        useRegex = pre["use_regex"]?.boolValue ?? true
        if let decoder = json["decoder"], !decoder.isNull, decoder["type"]?.stringValue != "ByteLevel" {
            throw TokenizerError(.unsupported, "unsupported decoder \(decoder["type"]?.stringValue ?? decoder.typeName) (supported: ByteLevel)")
        }
        guard let model = json["model"], model.objectMembers != nil else {
            throw TokenizerError(.invalidFile, "no model")
        }
        let modelType = model["type"]?.stringValue ?? "BPE"
        guard modelType == "BPE" else {
            throw TokenizerError(.unsupported, "unsupported model type \(modelType) (supported: BPE)")
        }
        for option in ["continuing_subword_prefix", "end_of_word_suffix", "unk_token"] {
            if let v = model[option], !v.isNull, v != .string("") {
                throw TokenizerError(.unsupported, "unsupported BPE option \(option) = \(v.serialized())")
            }
        }
        if model["byte_fallback"]?.boolValue == true {
            throw TokenizerError(.unsupported, "unsupported BPE option byte_fallback = true")
        }

        // Vocabulary.
        guard let vocabMembers = model["vocab"]?.objectMembers else {
            throw TokenizerError(.invalidFile, "model has no vocab object")
        }
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(vocabMembers.count)
        var maxId: Int32 = -1
        for (token, value) in vocabMembers {
            guard let id = value.intValue, id >= 0, id < Int(Int32.max) else {
                throw TokenizerError(.invalidFile, "vocab entry '\(token)' has id \(value.serialized()), not a non-negative 32-bit integer")
            }
            vocabulary[token] = Int32(id)
            maxId = max(maxId, Int32(id))
        }

        // Added tokens.
        var added: [AddedToken] = []
        for entry in json["added_tokens"]?.arrayValue ?? [] {
            guard let id = entry["id"]?.intValue, id >= 0, id < Int(Int32.max), let content = entry["content"]?.stringValue else {
                throw TokenizerError(.invalidFile, "added_tokens entry \(entry.serialized()) lacks an id or content")
            }
            added.append(AddedToken(
                id: Int32(id), content: content, special: entry["special"]?.boolValue ?? false,
                lstrip: entry["lstrip"]?.boolValue ?? false, rstrip: entry["rstrip"]?.boolValue ?? false,
                singleWord: entry["single_word"]?.boolValue ?? false, normalized: entry["normalized"]?.boolValue ?? false))
            maxId = max(maxId, Int32(id))
        }
        self.vocabulary = vocabulary
        self.addedTokens = added
        self.vocabSize = Int(maxId) + 1

        var idToToken = [String?](repeating: nil, count: vocabSize)
        for (token, id) in vocabulary { idToToken[Int(id)] = token }
        for token in added { idToToken[Int(token.id)] = token.content }
        self.idToToken = idToToken
        self.specialIds = Set(added.filter(\.special).map(\.id))
        self.addedByContent = Dictionary(added.map { ($0.content, $0) }, uniquingKeysWith: { a, _ in a })
        var byFirst: [UInt8: [(bytes: [UInt8], token: AddedToken)]] = [:]
        for token in added where !token.content.isEmpty {
            let bytes = Array(token.content.utf8)
            byFirst[bytes[0], default: []].append((bytes, token))
        }
        for key in byFirst.keys { byFirst[key]!.sort { $0.bytes.count > $1.bytes.count } }
        self.addedByFirstByte = byFirst

        // Merges: "a b" strings (older files) or ["a", "b"] pairs.
        var merges: [(String, String)] = []
        var mergeTable: [UInt64: BPEModel.Merge] = [:]
        for (rank, entry) in (model["merges"]?.arrayValue ?? []).enumerated() {
            let pair: (String, String)
            if let s = entry.stringValue {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerError(.invalidMerges, "merge \(rank) '\(s)' is not two tokens separated by a space") }
                pair = (String(parts[0]), String(parts[1]))
            } else if let a = entry.arrayValue, a.count == 2, let l = a[0].stringValue, let r = a[1].stringValue {
                pair = (l, r)
            } else {
                throw TokenizerError(.invalidMerges, "merge \(rank) \(entry.serialized()) is not a pair of tokens")
            }
            guard let l = vocabulary[pair.0], let r = vocabulary[pair.1] else {
                throw TokenizerError(.invalidMerges, "merge \(rank) '\(pair.0) \(pair.1)' uses a token that is not in the vocabulary")
            }
            guard let result = vocabulary[pair.0 + pair.1] else {
                throw TokenizerError(.invalidMerges, "merge \(rank) '\(pair.0) \(pair.1)' makes '\(pair.0 + pair.1)', which is not in the vocabulary")
            }
            merges.append(pair)
            let key = BPEModel.key(l, r)
            if mergeTable[key] == nil { mergeTable[key] = BPEModel.Merge(rank: Int32(rank), result: result) }
        }
        self.merges = merges
        let byteIds = ByteLevel.byteToScalar.map { vocabulary[String($0)] }
        let ignoreMerges = model["ignore_merges"]?.boolValue ?? false
        self.bpe = BPEModel(byteIds: byteIds, merges: mergeTable, wordIds: ignoreMerges ? vocabulary : nil)
    }

    /// The id of a token of the vocabulary or an added token.
    public func id(of token: String) -> Int32? {
        addedByContent[token]?.id ?? vocabulary[token]
    }

    /// The token (byte-level form, or an added token's content) of `id`.
    public func token(of id: Int32) -> String? {
        id >= 0 && Int(id) < idToToken.count ? idToToken[Int(id)] : nil
    }

    /// Whether `id` is an added token marked special.
    public func isSpecial(_ id: Int32) -> Bool { specialIds.contains(id) }

    /// Ids of the special added tokens.
    public var specialTokenIds: Set<Int32> { specialIds }

    // MARK: Encoding

    /// Token ids of `text`: added tokens where they occur, byte-level BPE in between.
    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        let utf8 = Array(text.utf8)
        var segmentStart = 0
        for match in addedTokenMatches(utf8) {
            encodeSegment(utf8[segmentStart..<match.range.lowerBound], into: &ids)
            ids.append(match.token.id)
            segmentStart = match.range.upperBound
        }
        encodeSegment(utf8[segmentStart...], into: &ids)
        return ids
    }

    private func encodeSegment(_ bytes: ArraySlice<UInt8>, into ids: inout [Int32]) {
        guard !bytes.isEmpty else { return }
        // Segment boundaries are match boundaries of whole UTF-8 sequences, so this never repairs.
        var scalars = Array(String(decoding: bytes, as: UTF8.self).unicodeScalars)
        if addPrefixSpace && scalars.first != " " { scalars.insert(" ", at: 0) }
        let pieces = useRegex ? ByteLevel.split(scalars) : [0..<scalars.count]
        var word: [UInt8] = []
        for piece in pieces {
            word.removeAll(keepingCapacity: true)
            for s in scalars[piece] { word.append(contentsOf: UTF8.encode(s)!) }
            bpe.encode(word, into: &ids)
        }
    }

    /// Leftmost-longest occurrences of added tokens in `text`, as Hugging Face's matcher finds them,
    /// each range widened by `lstrip` / `rstrip` whitespace.
    private func addedTokenMatches(_ text: [UInt8]) -> [(range: Range<Int>, token: AddedToken)] {
        guard !addedByFirstByte.isEmpty else { return [] }
        var matches: [(range: Range<Int>, token: AddedToken)] = []
        var i = 0
        var searchFloor = 0  // a match may not reach back into the previous one
        while i < text.count {
            guard let candidates = addedByFirstByte[text[i]],
                  let hit = candidates.first(where: { matchesAt(text, i, $0.bytes) && boundaryOK(text, i, $0) })
            else {
                i += 1
                continue
            }
            var lower = i, upper = i + hit.bytes.count
            if hit.token.lstrip { lower = whitespaceStart(text, before: lower, floor: searchFloor) }
            if hit.token.rstrip { upper = whitespaceEnd(text, after: upper) }
            matches.append((lower..<upper, hit.token))
            i = upper
            searchFloor = upper
        }
        return matches
    }

    private func matchesAt(_ text: [UInt8], _ i: Int, _ pattern: [UInt8]) -> Bool {
        guard i + pattern.count <= text.count else { return false }
        for k in 0..<pattern.count where text[i + k] != pattern[k] { return false }
        return true
    }

    /// `single_word`: the match is neither preceded nor followed by a word character (regex `\w`:
    /// alphabetic, marks, decimal digits, connector punctuation, join controls — as Hugging Face).
    private func boundaryOK(_ text: [UInt8], _ i: Int, _ candidate: (bytes: [UInt8], token: AddedToken)) -> Bool {
        guard candidate.token.singleWord else { return true }
        let before = String(decoding: text[..<i], as: UTF8.self).unicodeScalars.last
        let after = String(decoding: text[(i + candidate.bytes.count)...], as: UTF8.self).unicodeScalars.first
        func isWordScalar(_ s: Unicode.Scalar?) -> Bool {
            guard let s else { return false }
            if s.properties.isAlphabetic || s.properties.isJoinControl { return true }
            switch s.properties.generalCategory {
            case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
            default: return false
            }
        }
        return !isWordScalar(before) && !isWordScalar(after)
    }

    private func whitespaceStart(_ text: [UInt8], before end: Int, floor: Int) -> Int {
        let scalars = String(decoding: text[floor..<end], as: UTF8.self).unicodeScalars
        var start = end
        for s in scalars.reversed() {
            guard s.properties.isWhitespace else { break }
            start -= UTF8.width(s)
        }
        return start
    }

    private func whitespaceEnd(_ text: [UInt8], after start: Int) -> Int {
        var end = start
        for s in String(decoding: text[start...], as: UTF8.self).unicodeScalars {
            guard s.properties.isWhitespace else { break }
            end += UTF8.width(s)
        }
        return end
    }

    // MARK: Decoding

    /// The text of `ids`: each token's bytes (byte-level characters mapped back; a token with other
    /// characters, such as most added tokens, contributes its UTF-8), decoded as UTF-8 with invalid
    /// sequences replaced by U+FFFD, as Hugging Face's `errors="replace"`.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) throws(TokenizerError) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard let token = token(of: id) else {
                if id >= 0 && Int(id) < vocabSize {
                    throw TokenizerError(.idOutOfRange, "token id \(id) has no token in the vocabulary")
                }
                throw TokenizerError(.idOutOfRange, "token id \(id) is outside the vocabulary (0..<\(vocabSize))")
            }
            if skipSpecialTokens && specialIds.contains(id) { continue }
            if let decoded = ByteLevel.decode(token) {
                bytes += decoded
            } else {
                bytes += Array(token.utf8)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A `decoder` of `tokenizer.json`: turns the tokens of ids back into text. Each step maps a list of
/// token strings to another (Hugging Face's `decode_chain`); the result is their concatenation.
indirect enum TokenDecoder: Sendable {
    case byteLevel
    case replace(Normalizer.Pattern, String)
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case metaspace(replacement: Unicode.Scalar, prependScheme: PreTokenizer.PrependScheme)
    case sequence([TokenDecoder])

    init(json: JSONValue) throws(TokenizerError) {
        let type = json["type"]?.stringValue ?? json.typeName
        switch type {
        case "ByteLevel":
            self = .byteLevel
        case "Replace":
            guard let content = json["content"]?.stringValue else { throw TokenizerError(.invalidFile, "decoder Replace has no content") }
            self = .replace(try Normalizer.Pattern(json: json["pattern"], what: "decoder Replace"), content)
        case "ByteFallback":
            self = .byteFallback
        case "Fuse":
            self = .fuse
        case "Strip":
            guard let content = json["content"]?.stringValue, content.unicodeScalars.count == 1 else {
                throw TokenizerError(.invalidFile, "decoder Strip needs one content character")
            }
            self = .strip(content: content.unicodeScalars.first!, start: json["start"]?.intValue ?? 0, stop: json["stop"]?.intValue ?? 0)
        case "Metaspace":
            // Parsed as the pre-tokenizer of the same name, which has the same fields.
            guard case .metaspace(let r, let scheme, _) = try PreTokenizer(json: json) else { fatalError("unreachable") }
            self = .metaspace(replacement: r, prependScheme: scheme)
        case "Sequence":
            guard let items = json["decoders"]?.arrayValue else { throw TokenizerError(.invalidFile, "decoder Sequence has no decoders") }
            var list: [TokenDecoder] = []
            for item in items { list.append(try TokenDecoder(json: item)) }
            self = .sequence(list)
        default:
            throw TokenizerError(.unsupported, "unsupported decoder \(type) (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence)")
        }
    }

    func decode(_ tokens: [String]) -> String {
        decodeChain(tokens).joined()
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            // All tokens' bytes as one string: a character sequence split over tokens joins up again.
            var bytes: [UInt8] = []
            for t in tokens {
                if let b = ByteLevel.decode(t) { bytes += b } else { bytes += Array(t.utf8) }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .replace(let pattern, let content):
            return tokens.map { pattern.replacingMatches(in: $0, with: content) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(s)
                } else {
                    out += Array(repeating: "\u{FFFD}", count: pending.count)
                }
                pending.removeAll()
            }
            for t in tokens {
                let u = Array(t.utf8)
                if u.count == 6, t.hasPrefix("<0x"), u[5] == UInt8(ascii: ">"),
                   let b = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                let chars = Array(token.unicodeScalars)
                var lower = 0
                while lower < min(start, chars.count) && chars[lower] == content { lower += 1 }
                var upper = chars.count
                var k = 0
                while k < stop && upper > lower && chars[upper - 1] == content { upper -= 1; k += 1 }
                return String(scalars: chars[lower..<upper])
            }
        case .metaspace(let replacement, let scheme):
            return tokens.enumerated().map { i, token in
                var s: [Unicode.Scalar] = []
                for c in token.unicodeScalars {
                    if c == replacement {
                        if i == 0 && scheme != .never { continue }  // (every one in the first token, as Hugging Face)
                        s.append(" ")
                    } else {
                        s.append(c)
                    }
                }
                return String(scalars: s)
            }
        case .sequence(let list):
            var t = tokens
            for d in list { t = d.decodeChain(t) }
            return t
        }
    }
}

/// A `post_processor` of `tokenizer.json`: the special tokens `encode` puts around a sequence.
indirect enum PostProcessor: Sendable {
    /// Adds nothing (it only adjusts offsets, which this tokenizer does not report).
    case byteLevel
    /// `single` of TemplateProcessing: ids before and after the sequence.
    case template(prefix: [Int32], suffix: [Int32])
    case sequence([PostProcessor])

    init(json: JSONValue) throws(TokenizerError) {
        let type = json["type"]?.stringValue ?? json.typeName
        switch type {
        case "ByteLevel":
            self = .byteLevel
        case "TemplateProcessing":
            guard let single = json["single"]?.arrayValue else {
                throw TokenizerError(.invalidFile, "post_processor TemplateProcessing has no single template")
            }
            // special_tokens: name → {"ids": [...]}.
            var special: [String: [Int32]] = [:]
            for (name, value) in json["special_tokens"]?.objectMembers ?? [] {
                guard let ids = value["ids"]?.arrayValue?.compactMap({ $0.intValue }), ids.allSatisfy({ $0 >= 0 && $0 < Tokenizer.maxTokenId }) else {
                    throw TokenizerError(.invalidFile, "post_processor special token \(name.debugDescription) has no valid ids")
                }
                special[name] = ids.map { Int32($0) }
            }
            var prefix: [Int32] = [], suffix: [Int32] = []
            var sawSequence = false
            for piece in single {
                if let token = piece["SpecialToken"] {
                    guard let name = token["id"]?.stringValue, let ids = special[name] else {
                        throw TokenizerError(.invalidFile, "post_processor template names special token \(piece.serialized()), which special_tokens lacks")
                    }
                    if sawSequence { suffix += ids } else { prefix += ids }
                } else if let seq = piece["Sequence"], seq["id"]?.stringValue == "A" {
                    sawSequence = true
                } else {
                    throw TokenizerError(.unsupported, "unsupported post_processor single template piece \(piece.serialized())")
                }
            }
            self = .template(prefix: prefix, suffix: suffix)
        case "RobertaProcessing", "BertProcessing":
            func token(_ key: String) throws(TokenizerError) -> Int32 {
                guard let pair = json[key]?.arrayValue, pair.count == 2, let id = pair[1].intValue, id >= 0, id < Tokenizer.maxTokenId else {
                    throw TokenizerError(.invalidFile, "post_processor \(type) has no valid \(key) [token, id]")
                }
                return Int32(id)
            }
            self = .template(prefix: [try token("cls")], suffix: [try token("sep")])
        case "Sequence":
            guard let items = json["processors"]?.arrayValue else { throw TokenizerError(.invalidFile, "post_processor Sequence has no processors") }
            var list: [PostProcessor] = []
            for item in items { list.append(try PostProcessor(json: item)) }
            self = .sequence(list)
        default:
            throw TokenizerError(.unsupported, "unsupported post_processor \(type) (supported: ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing, Sequence)")
        }
    }

    func process(_ ids: [Int32]) -> [Int32] {
        switch self {
        case .byteLevel: return ids
        case .template(let prefix, let suffix): return prefix + ids + suffix
        case .sequence(let list):
            var out = ids
            for p in list { out = p.process(out) }
            return out
        }
    }

    /// Whether it adds any token (else `add_bos_token` / `add_eos_token` of the config apply).
    var addsTokens: Bool {
        switch self {
        case .byteLevel: false
        case .template(let prefix, let suffix): !prefix.isEmpty || !suffix.isEmpty
        case .sequence(let list): list.contains(where: \.addsTokens)
        }
    }
}

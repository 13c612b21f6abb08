import Foundation

/// A `normalizer` of `tokenizer.json`: rewrites each stretch of text between added tokens before it is
/// pre-tokenized (Hugging Face normalizes the pieces separately, so `Prepend` applies to each).
indirect enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case prepend(String)
    case replace(Pattern, String)
    case strip(left: Bool, right: Bool)
    case sequence([Normalizer])

    /// A `Replace` / `Split` pattern: a literal string or a regex.
    enum Pattern: Sendable {
        case string(String)
        case regex(TokenRegex)

        init(json: JSONValue?, what: String) throws(TokenizerError) {
            if let s = json?["String"]?.stringValue {
                self = .string(s)
            } else if let r = json?["Regex"]?.stringValue {
                self = .regex(try TokenRegex(r))
            } else {
                throw TokenizerError(.invalidFile, "\(what) has no pattern {\"String\": …} or {\"Regex\": …}")
            }
        }

        /// Non-overlapping matches in `text[bounds]`, leftmost first.
        func matches(in text: [Unicode.Scalar], bounds: Range<Int>) -> [Range<Int>] {
            switch self {
            case .regex(let r):
                if let known = r.known { return known.matches(in: text, bounds: bounds) }
                return r.matches(in: text, bounds: bounds)
            case .string(let s):
                let needle = Array(s.unicodeScalars)
                guard !needle.isEmpty else { return [] }
                var out: [Range<Int>] = []
                var i = bounds.lowerBound
                while i + needle.count <= bounds.upperBound {
                    var k = 0
                    while k < needle.count && text[i + k] == needle[k] { k += 1 }
                    if k == needle.count {
                        out.append(i..<(i + k)); i += k
                    } else {
                        i += 1
                    }
                }
                return out
            }
        }

        /// `text` with every match replaced by `content`.
        func replacingMatches(in text: String, with content: String) -> String {
            if case .string(let literal) = self {
                // On UTF-8 directly: a valid needle only matches a valid haystack at scalar boundaries.
                let needle = Array(literal.utf8)
                guard let first = needle.first else { return text }
                let haystack = Array(text.utf8)
                let replacement = Array(content.utf8)
                var out: [UInt8] = []
                out.reserveCapacity(haystack.count + haystack.count / 4)
                var i = 0
                while i < haystack.count {
                    if haystack[i] == first && i + needle.count <= haystack.count
                        && (needle.count == 1 || haystack[i..<(i + needle.count)].elementsEqual(needle)) {
                        out += replacement
                        i += needle.count
                    } else {
                        out.append(haystack[i])
                        i += 1
                    }
                }
                return String(decoding: out, as: UTF8.self)
            }
            let scalars = Array(text.unicodeScalars)
            var out: [Unicode.Scalar] = []
            out.reserveCapacity(scalars.count)
            var last = 0
            for m in matches(in: scalars, bounds: 0..<scalars.count) {
                out += scalars[last..<m.lowerBound]
                out += content.unicodeScalars
                last = m.upperBound
            }
            out += scalars[last...]
            return String(scalars: out)
        }
    }

    init(json: JSONValue) throws(TokenizerError) {
        let type = json["type"]?.stringValue ?? json.typeName
        switch type {
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "Prepend":
            guard let p = json["prepend"]?.stringValue else { throw TokenizerError(.invalidFile, "normalizer Prepend has no prepend string") }
            self = .prepend(p)
        case "Replace":
            guard let content = json["content"]?.stringValue else { throw TokenizerError(.invalidFile, "normalizer Replace has no content") }
            self = .replace(try Pattern(json: json["pattern"], what: "normalizer Replace"), content)
        case "Strip":
            self = .strip(left: json["strip_left"]?.boolValue ?? true, right: json["strip_right"]?.boolValue ?? true)
        case "Sequence":
            guard let items = json["normalizers"]?.arrayValue else { throw TokenizerError(.invalidFile, "normalizer Sequence has no normalizers") }
            var list: [Normalizer] = []
            for item in items { list.append(try Normalizer(json: item)) }
            self = .sequence(list)
        default:
            throw TokenizerError(.unsupported, "unsupported normalizer \(type) (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence)")
        }
    }

    func normalize(_ text: String) -> String {
        switch self {
        case .nfc:
            // Text without any scalar from U+0300 up (where combining marks start) is already NFC.
            if text.unicodeScalars.allSatisfy({ $0.value < 0x300 }) { return text }
            return text.precomposedStringWithCanonicalMapping
        case .nfd:
            if text.utf8.allSatisfy({ $0 < 0x80 }) { return text }
            return text.decomposedStringWithCanonicalMapping
        case .nfkc:
            if text.utf8.allSatisfy({ $0 < 0x80 }) { return text }
            return text.precomposedStringWithCompatibilityMapping
        case .nfkd:
            if text.utf8.allSatisfy({ $0 < 0x80 }) { return text }
            return text.decomposedStringWithCompatibilityMapping
        case .lowercase:
            // Per character, as Rust's `char::to_lowercase` (no context-dependent final sigma).
            var out: [Unicode.Scalar] = []
            out.reserveCapacity(text.utf8.count)
            for s in text.unicodeScalars {
                if s.value < 0x80 {
                    out.append((0x41...0x5A).contains(s.value) ? Unicode.Scalar(s.value + 32)! : s)
                } else {
                    out += s.properties.lowercaseMapping.unicodeScalars
                }
            }
            return String(scalars: out)
        case .prepend(let p):
            return text.isEmpty ? text : p + text
        case .replace(let pattern, let content):
            return pattern.replacingMatches(in: text, with: content)
        case .strip(let left, let right):
            var scalars = Substring(text).unicodeScalars
            if left { while let f = scalars.first, UnicodeClasses.isWhitespace(f) { scalars.removeFirst() } }
            if right { while let l = scalars.last, UnicodeClasses.isWhitespace(l) { scalars.removeLast() } }
            return String(scalars)
        case .sequence(let list):
            var t = text
            for n in list { t = n.normalize(t) }
            return t
        }
    }
}

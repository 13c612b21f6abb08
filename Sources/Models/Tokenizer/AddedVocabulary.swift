/// Finds added tokens in text as Hugging Face's `AddedVocabulary` does: leftmost-longest occurrences
/// (its Aho-Corasick matcher), a `single_word` token only where no word character touches it, and
/// `lstrip` / `rstrip` widening the match over the whitespace beside it.
struct AddedTokenMatcher: Sendable {
    /// Candidates by the first byte of their content, longest first.
    private let byFirstByte: [[(bytes: [UInt8], token: Tokenizer.AddedToken)]]
    let isEmpty: Bool

    /// `contents[i]` is what is searched for `tokens[i]` (the normalized content for normalized tokens).
    init(_ entries: [(content: String, token: Tokenizer.AddedToken)]) {
        var table = [[(bytes: [UInt8], token: Tokenizer.AddedToken)]](repeating: [], count: 256)
        for e in entries where !e.content.isEmpty {
            let bytes = Array(e.content.utf8)
            table[Int(bytes[0])].append((bytes, e.token))
        }
        for k in 0..<256 { table[k].sort { $0.bytes.count > $1.bytes.count } }
        byFirstByte = table
        isEmpty = entries.allSatisfy { $0.content.isEmpty }
    }

    /// The matches in `text` (UTF-8), each with its range widened by `lstrip` / `rstrip`.
    func matches(in text: [UInt8]) -> [(range: Range<Int>, token: Tokenizer.AddedToken)] {
        guard !isEmpty else { return [] }
        var out: [(range: Range<Int>, token: Tokenizer.AddedToken)] = []
        var i = 0
        var floor = 0  // a match may not reach back into the previous one
        while i < text.count {
            let candidates = byFirstByte[Int(text[i])]
            guard !candidates.isEmpty, let hit = candidates.first(where: { Self.matchesAt(text, i, $0.bytes) }) else {
                i += 1
                continue
            }
            let end = i + hit.bytes.count
            // A single_word match inside a word is skipped, and the search goes on after it.
            if hit.token.singleWord && !Self.isWordBoundary(text, i, end) {
                i = end
                continue
            }
            var lower = i, upper = end
            if hit.token.lstrip { lower = Self.whitespaceStart(text, before: lower, floor: floor) }
            if hit.token.rstrip { upper = Self.whitespaceEnd(text, after: upper) }
            out.append((lower..<upper, hit.token))
            i = end
            floor = upper
            if upper > i { i = upper }
        }
        return out
    }

    private static func matchesAt(_ text: [UInt8], _ i: Int, _ pattern: [UInt8]) -> Bool {
        guard i + pattern.count <= text.count else { return false }
        for k in 1..<pattern.count where text[i + k] != pattern[k] { return false }
        return true
    }

    /// Neither preceded nor followed by a word character (regex `\w`).
    private static func isWordBoundary(_ text: [UInt8], _ start: Int, _ end: Int) -> Bool {
        let before = String(decoding: text[..<start].suffix(4), as: UTF8.self).unicodeScalars.last
        let after = String(decoding: text[end...].prefix(4), as: UTF8.self).unicodeScalars.first
        func isWord(_ s: Unicode.Scalar?) -> Bool {
            guard let s, s != "\u{FFFD}" else { return false }
            return s.properties.isAlphabetic || s.properties.isJoinControl || UnicodeClasses.of(s) & UnicodeClasses.word != 0
        }
        return !isWord(before) && !isWord(after)
    }

    private static func whitespaceStart(_ text: [UInt8], before end: Int, floor: Int) -> Int {
        var start = end
        while start > floor {
            var k = start - 1
            while k > floor && text[k] & 0xC0 == 0x80 { k -= 1 }  // back to the scalar's first byte
            guard let (s, _) = scalar(at: k, in: text), UnicodeClasses.isWhitespace(s) else { break }
            start = k
        }
        return start
    }

    private static func whitespaceEnd(_ text: [UInt8], after start: Int) -> Int {
        var end = start
        while end < text.count, let (s, width) = scalar(at: end, in: text), UnicodeClasses.isWhitespace(s) { end += width }
        return end
    }

    private static func scalar(at i: Int, in text: [UInt8]) -> (Unicode.Scalar, Int)? {
        var it = text[i...].makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        guard case .valid(let encoded) = parser.parseScalar(from: &it) else { return nil }
        return (Unicode.UTF8.decode(encoded), encoded.count)
    }
}

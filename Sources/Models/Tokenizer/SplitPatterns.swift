/// The split patterns that real `tokenizer.json` files carry, matched by hand: the same pieces as
/// `TokenRegex` gives for them (a test checks both on random text), at a fraction of the cost.
enum KnownSplitPattern: Sendable {
    /// GPT-2's ByteLevel pattern (`ByteLevel.split`).
    case gpt2
    /// The cl100k family (Llama-3, Qwen2): digits in runs of at most `maxDigits`.
    case cl100k(maxDigits: Int)

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(pattern: String) {
        switch pattern {
        case Self.gpt2Pattern: self = .gpt2
        case Self.llama3Pattern: self = .cl100k(maxDigits: 3)
        case Self.qwen2Pattern: self = .cl100k(maxDigits: 1)
        default: return nil
        }
    }

    /// The matches in `text[bounds]` (they cover it: every character starts some alternative).
    func matches(in text: [Unicode.Scalar], bounds: Range<Int>) -> [Range<Int>] {
        switch self {
        case .gpt2:
            return ByteLevel.split(Array(text[bounds])).map { ($0.lowerBound + bounds.lowerBound)..<($0.upperBound + bounds.lowerBound) }
        case .cl100k(let maxDigits):
            return text.withUnsafeBufferPointer { Self.cl100k($0, bounds, maxDigits: maxDigits) }
        }
    }

    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,k}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
    /// alternatives tried in order at each position, with the backtracking a regex engine would do.
    private static func cl100k(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ bounds: Range<Int>, maxDigits: Int) -> [Range<Int>] {
        let letter = UnicodeClasses.letter, number = UnicodeClasses.number, space = UnicodeClasses.whiteSpace
        let n = bounds.upperBound
        var out: [Range<Int>] = []
        out.reserveCapacity((n - bounds.lowerBound) / 3)
        let table = UnicodeClasses.bmp
        @inline(__always) func bits(_ k: Int) -> UInt32 {
            guard k < n else { return 0 }
            let v = s[k].value
            return v < 0x10000 ? table[Int(v)] : UnicodeClasses.compute(s[k])
        }
        @inline(__always) func isNewline(_ k: Int) -> Bool { s[k] == "\r" || s[k] == "\n" }
        /// `(?i)` comparison with an ASCII lowercase letter: its uppercase, and `ſ` for s.
        @inline(__always) func folds(_ k: Int, _ lower: UInt32) -> Bool {
            guard k < n else { return false }
            let v = s[k].value
            return v == lower || v == lower - 32 || (lower == 0x73 && v == 0x17F)
        }
        var i = bounds.lowerBound
        while i < n {
            let c = s[i]
            let b = bits(i)
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if c == "'" {
                if folds(i + 1, 0x73) || folds(i + 1, 0x74) {  // s t
                    out.append(i..<(i + 2)); i += 2; continue
                }
                if (folds(i + 1, 0x72) || folds(i + 1, 0x76)) && folds(i + 2, 0x65) {  // re ve
                    out.append(i..<(i + 3)); i += 3; continue
                }
                if folds(i + 1, 0x6D) {  // m
                    out.append(i..<(i + 2)); i += 2; continue
                }
                if folds(i + 1, 0x6C) && folds(i + 2, 0x6C) {  // ll
                    out.append(i..<(i + 3)); i += 3; continue
                }
                if folds(i + 1, 0x64) {  // d
                    out.append(i..<(i + 2)); i += 2; continue
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            var head = -1
            if b & letter != 0 {
                head = i
            } else if b & number == 0 && !isNewline(i) && bits(i + 1) & letter != 0 {
                head = i + 1
            }
            if head >= 0 {
                var j = head + 1
                while j < n && bits(j) & letter != 0 { j += 1 }
                out.append(i..<j); i = j; continue
            }
            // \p{N}{1,k}
            if b & number != 0 {
                var j = i + 1
                while j < n && j - i < maxDigits && bits(j) & number != 0 { j += 1 }
                out.append(i..<j); i = j; continue
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            let otherStart = c == " " ? i + 1 : i
            let otherBits = bits(otherStart)
            if otherStart < n && otherBits & (letter | number | space) == 0 {
                var j = otherStart + 1
                while j < n && bits(j) & (letter | number | space) == 0 { j += 1 }
                while j < n && isNewline(j) { j += 1 }
                out.append(i..<j); i = j; continue
            }
            // Here c is whitespace. The run of whitespace is i..<j.
            var j = i + 1
            var lastNewline = isNewline(i) ? i : -1
            while j < n && bits(j) & space != 0 {
                if isNewline(j) { lastNewline = j }
                j += 1
            }
            // \s*[\r\n]+ : up to and including the last newline of the run.
            if lastNewline >= 0 {
                out.append(i..<(lastNewline + 1)); i = lastNewline + 1; continue
            }
            // \s+(?!\S) : the whole run at the end of the text, else all but its last character.
            if j == n || j - i == 1 {
                out.append(i..<j); i = j  // (or \s+ for a single space before a non-space)
            } else {
                out.append(i..<(j - 1)); i = j - 1
            }
        }
        return out
    }
}

/// GPT-2's byte-level scheme: every byte gets a printable Unicode character, so that any text is a
/// string over a 256-character alphabet and no input is ever unknown to the vocabulary.
enum ByteLevel {
    /// `bytes_to_unicode()` of GPT-2: printable Latin-1 bytes map to themselves, the other 68 bytes to
    /// U+0100 onwards in byte order (so space is `Ġ`, U+0120, and newline `Ċ`, U+010A).
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// The inverse of `byteToScalar`: scalar value → byte.
    static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()

    /// A byte string in the byte-level alphabet (`"Ġhello"` for `" hello"`).
    static func encode<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
        String(scalars: bytes.map { byteToScalar[Int($0)] })
    }

    /// The bytes a token stands for, or nil when it has a character outside the byte-level alphabet
    /// (added tokens such as `<|endoftext|>` are made of such characters only when they use none).
    static func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for s in token.unicodeScalars {
            guard let b = scalarToByte[s.value] else { return nil }
            out.append(b)
        }
        return out
    }

    /// Splits text as GPT-2's pattern does, without a regex engine:
    ///
    ///     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    ///
    /// The alternatives are tried in order at each position, as a backtracking engine does. The
    /// subtle one is `\s+(?!\S)`: a whitespace run followed by a non-space gives back its last
    /// character, which then starts the next piece (`"  hi"` → `" "`, `" hi"`). Returns the pieces as
    /// ranges of `scalars`.
    static func split(_ scalars: [Unicode.Scalar]) -> [Range<Int>] {
        var pieces: [Range<Int>] = []
        let n = scalars.count
        var i = 0
        @inline(__always) func isLetter(_ k: Int) -> Bool { k < n && ScalarClass.of(scalars[k]) == .letter }
        @inline(__always) func isNumber(_ k: Int) -> Bool { k < n && ScalarClass.of(scalars[k]) == .number }
        @inline(__always) func isOther(_ k: Int) -> Bool { k < n && ScalarClass.of(scalars[k]) == .other }
        @inline(__always) func isSpace(_ k: Int) -> Bool { k < n && ScalarClass.of(scalars[k]) == .whitespace }

        while i < n {
            let c = scalars[i]
            // 's 't 're 've 'm 'll 'd (case-sensitive, as in GPT-2).
            if c == "'" && i + 1 < n {
                let a = scalars[i + 1]
                if a == "s" || a == "t" || a == "m" || a == "d" {
                    pieces.append(i..<(i + 2)); i += 2; continue
                }
                if i + 2 < n {
                    let b = scalars[i + 2]
                    if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") {
                        pieces.append(i..<(i + 3)); i += 3; continue
                    }
                }
            }
            // An optional single space (U+0020 only) before a run of letters, numbers or other symbols.
            let start = i
            let head = c == " " && i + 1 < n && !isSpace(i + 1) ? i + 1 : i
            if isLetter(head) || isNumber(head) || isOther(head) {
                let cls = ScalarClass.of(scalars[head])
                var j = head + 1
                while j < n && ScalarClass.of(scalars[j]) == cls { j += 1 }
                pieces.append(start..<j); i = j; continue
            }
            // Whitespace: here `c` is whitespace (every other scalar was handled above).
            var j = i + 1
            while isSpace(j) { j += 1 }
            if j == n || j - i == 1 {
                pieces.append(i..<j)  // `\s+(?!\S)` to the end, or `\s+` of one character
            } else {
                pieces.append(i..<(j - 1))  // leave the last space to the next piece
            }
            i = pieces[pieces.count - 1].upperBound
        }
        return pieces
    }
}

/// The four classes the GPT-2 pattern distinguishes: `\p{L}`, `\p{N}`, `\s` (Unicode White_Space,
/// which is Oniguruma's `\s`) and everything else.
enum ScalarClass {
    case letter, number, whitespace, other

    @inline(__always) static func of(_ s: Unicode.Scalar) -> ScalarClass {
        // ASCII fast path.
        if s.value < 0x80 {
            let v = s.value
            if (0x41...0x5A).contains(v) || (0x61...0x7A).contains(v) { return .letter }
            if (0x30...0x39).contains(v) { return .number }
            if v == 0x20 || (0x09...0x0D).contains(v) { return .whitespace }
            return .other
        }
        let bits = UnicodeClasses.of(s)
        if bits & UnicodeClasses.whiteSpace != 0 { return .whitespace }
        if bits & UnicodeClasses.letter != 0 { return .letter }
        if bits & UnicodeClasses.number != 0 { return .number }
        return .other
    }
}

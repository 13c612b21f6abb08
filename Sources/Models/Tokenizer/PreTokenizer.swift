/// Pieces of one normalized text: ranges over a shared scalar buffer, so that splitting only
/// refines ranges and only the steps that rewrite characters copy.
struct Pieces {
    var scalars: [Unicode.Scalar]
    var ranges: [Range<Int>]
    /// The first piece begins at offset 0 of the original input (Metaspace's `prepend_scheme: first`).
    var firstAtStart: Bool
    /// ByteLevel ran: the pieces stand for their UTF-8 bytes in GPT-2's byte alphabet. The mapping is
    /// left to the model (which reads the bytes directly) unless a later step needs the characters.
    var byteLevel = false

    init(_ scalars: [Unicode.Scalar], firstAtStart: Bool) {
        self.scalars = scalars
        self.ranges = scalars.isEmpty ? [] : [0..<scalars.count]
        self.firstAtStart = firstAtStart
    }

    /// Rewrites every piece; `body` gets the piece's index and characters, and appends the new ones.
    mutating func rewrite(_ body: (Int, ArraySlice<Unicode.Scalar>, inout [Unicode.Scalar]) -> Void) {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(scalars.count + ranges.count)
        var newRanges: [Range<Int>] = []
        newRanges.reserveCapacity(ranges.count)
        for (k, r) in ranges.enumerated() {
            let start = out.count
            body(k, scalars[r], &out)
            if out.count > start { newRanges.append(start..<out.count) }
        }
        scalars = out
        ranges = newRanges
    }

    /// Maps the pieces into GPT-2's byte alphabet (when a step after ByteLevel needs the characters).
    mutating func materializeByteLevel() {
        guard byteLevel else { return }
        byteLevel = false
        rewrite { _, piece, out in
            for s in piece { for b in UTF8.encode(s)! { out.append(ByteLevel.byteToScalar[Int(b)]) } }
        }
    }

    /// Splits every piece at the matches `find` returns, keeping pieces as `behavior` says (Hugging
    /// Face's `NormalizedString::split`; empty pieces are dropped).
    mutating func split(behavior: SplitBehavior, invert: Bool = false,
                        find: ([Unicode.Scalar], Range<Int>) -> [Range<Int>]) {
        var newRanges: [Range<Int>] = []
        newRanges.reserveCapacity(ranges.count * 2)
        let oldFirst = ranges.first?.lowerBound
        for r in ranges {
            // All stretches of the piece, each marked as a match or not.
            var stretches: [(Range<Int>, Bool)] = []
            var last = r.lowerBound
            for m in find(scalars, r) {
                if last < m.lowerBound { stretches.append((last..<m.lowerBound, invert)) }
                stretches.append((m, !invert))
                last = m.upperBound
            }
            if last < r.upperBound { stretches.append((last..<r.upperBound, invert)) }
            for piece in behavior.apply(stretches) where !piece.isEmpty { newRanges.append(piece) }
        }
        if firstAtStart && newRanges.first?.lowerBound != oldFirst { firstAtStart = false }
        ranges = newRanges
    }

    /// Splits at every single character for which `isMatch` holds.
    mutating func split(behavior: SplitBehavior, where isMatch: (Unicode.Scalar) -> Bool) {
        split(behavior: behavior) { scalars, r in
            var out: [Range<Int>] = []
            for k in r where isMatch(scalars[k]) { out.append(k..<(k + 1)) }
            return out
        }
    }
}

/// What a split keeps of the matches: Hugging Face's `SplitDelimiterBehavior`.
enum SplitBehavior: Sendable {
    case removed, isolated, mergedWithPrevious, mergedWithNext, contiguous

    init(json: JSONValue?) throws(TokenizerError) {
        switch json?.stringValue {
        case "Removed": self = .removed
        case "Isolated": self = .isolated
        case "MergedWithPrevious": self = .mergedWithPrevious
        case "MergedWithNext": self = .mergedWithNext
        case "Contiguous": self = .contiguous
        default: throw TokenizerError(.unsupported, "unsupported split behavior \(json?.serialized() ?? "none")")
        }
    }

    /// The pieces made from stretches `(range, isMatch)` that cover a piece in order.
    func apply(_ stretches: [(Range<Int>, Bool)]) -> [Range<Int>] {
        switch self {
        case .isolated:
            return stretches.map(\.0)
        case .removed:
            return stretches.filter { !$0.1 }.map(\.0)
        case .contiguous:
            var out: [Range<Int>] = []
            var previous = false
            for (r, m) in stretches {
                if m == previous, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<r.upperBound
                } else {
                    out.append(r)
                }
                previous = m
            }
            return out
        case .mergedWithPrevious:
            var out: [Range<Int>] = []
            var previous = false
            for (r, m) in stretches {
                if m && !previous, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<r.upperBound
                } else {
                    out.append(r)
                }
                previous = m
            }
            return out
        case .mergedWithNext:
            var out: [Range<Int>] = []
            var previous = false
            for (r, m) in stretches.reversed() {
                if m && !previous, let last = out.last {
                    out[out.count - 1] = r.lowerBound..<last.upperBound
                } else {
                    out.append(r)
                }
                previous = m
            }
            return out.reversed()
        }
    }
}

/// A `pre_tokenizer` of `tokenizer.json`: splits normalized text into the words the model encodes.
indirect enum PreTokenizer: Sendable {
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(Normalizer.Pattern, SplitBehavior, invert: Bool)
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme, split: Bool)
    case digits(individual: Bool)
    case whitespace
    case whitespaceSplit
    case punctuation(SplitBehavior)
    case sequence([PreTokenizer])

    enum PrependScheme: Sendable { case first, always, never }

    init(json: JSONValue) throws(TokenizerError) {
        let type = json["type"]?.stringValue ?? json.typeName
        switch type {
        case "ByteLevel":
            self = .byteLevel(addPrefixSpace: json["add_prefix_space"]?.boolValue ?? true,
                              useRegex: json["use_regex"]?.boolValue ?? true)
        case "Split":
            self = .split(try Normalizer.Pattern(json: json["pattern"], what: "pre_tokenizer Split"),
                          try SplitBehavior(json: json["behavior"]), invert: json["invert"]?.boolValue ?? false)
        case "Metaspace":
            let replacement = json["replacement"]?.stringValue ?? "\u{2581}"
            guard replacement.unicodeScalars.count == 1, let r = replacement.unicodeScalars.first else {
                throw TokenizerError(.unsupported, "unsupported Metaspace replacement \(replacement.debugDescription) (one character expected)")
            }
            let scheme: PrependScheme
            switch json["prepend_scheme"]?.stringValue {
            case "first": scheme = .first
            case "always": scheme = .always
            case "never": scheme = .never
            case nil: scheme = (json["add_prefix_space"]?.boolValue ?? true) ? .always : .never
            case let other?: throw TokenizerError(.unsupported, "unsupported Metaspace prepend_scheme \(other)")
            }
            self = .metaspace(replacement: r, prependScheme: scheme, split: json["split"]?.boolValue ?? true)
        case "Digits":
            self = .digits(individual: json["individual_digits"]?.boolValue ?? false)
        case "Whitespace":
            self = .whitespace
        case "WhitespaceSplit":
            self = .whitespaceSplit
        case "Punctuation":
            self = .punctuation(json["behavior"] == nil ? .isolated : try SplitBehavior(json: json["behavior"]))
        case "Sequence":
            guard let items = json["pretokenizers"]?.arrayValue else {
                throw TokenizerError(.invalidFile, "pre_tokenizer Sequence has no pretokenizers")
            }
            var list: [PreTokenizer] = []
            for item in items { list.append(try PreTokenizer(json: item)) }
            self = .sequence(list)
        default:
            throw TokenizerError(.unsupported, "unsupported pre_tokenizer \(type) (supported: ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, Sequence)")
        }
    }

    func apply(_ p: inout Pieces) {
        if case .sequence(let list) = self {
            for step in list { step.apply(&p) }
            return
        }
        p.materializeByteLevel()
        switch self {
        case .byteLevel(let addPrefixSpace, let useRegex):
            if addPrefixSpace && p.ranges.contains(where: { p.scalars[$0.lowerBound] != " " }) {
                p.rewrite { _, piece, out in
                    if piece.first != " " { out.append(" ") }
                    out.append(contentsOf: piece)
                }
            }
            if useRegex {
                p.split(behavior: .isolated) { KnownSplitPattern.gpt2.matches(in: $0, bounds: $1) }
            }
            p.byteLevel = true
        case .split(let pattern, let behavior, let invert):
            p.split(behavior: behavior, invert: invert) { pattern.matches(in: $0, bounds: $1) }
        case .metaspace(let replacement, let scheme, let split):
            let firstAtStart = p.firstAtStart
            p.rewrite { k, piece, out in
                let prepend: Bool
                switch scheme {
                case .always: prepend = true
                case .first: prepend = k == 0 && firstAtStart
                case .never: prepend = false
                }
                // The check is on the text after spaces became the replacement.
                let first = piece.first == " " ? replacement : piece.first
                if prepend && first != replacement { out.append(replacement) }
                for s in piece { out.append(s == " " ? replacement : s) }
            }
            if split { p.split(behavior: .mergedWithNext) { $0 == replacement } }
        case .digits(let individual):
            p.split(behavior: individual ? .isolated : .contiguous) { UnicodeClasses.of($0) & UnicodeClasses.number != 0 }
        case .whitespace:
            // `\w+|[^\w\s]+`, keeping the matches and dropping what lies between (whitespace).
            p.split(behavior: .removed, invert: true) { scalars, r in
                var out: [Range<Int>] = []
                var i = r.lowerBound
                while i < r.upperBound {
                    let b = UnicodeClasses.of(scalars[i])
                    let isWord = b & UnicodeClasses.word != 0
                    if !isWord && b & UnicodeClasses.whiteSpace != 0 { i += 1; continue }
                    var j = i + 1
                    while j < r.upperBound {
                        let c = UnicodeClasses.of(scalars[j])
                        let w = c & UnicodeClasses.word != 0
                        if w != isWord || (!w && c & UnicodeClasses.whiteSpace != 0) { break }
                        j += 1
                    }
                    out.append(i..<j)
                    i = j
                }
                return out
            }
        case .whitespaceSplit:
            p.split(behavior: .removed) { UnicodeClasses.isWhitespace($0) }
        case .punctuation(let behavior):
            // Rust's `is_ascii_punctuation` (which counts symbols such as `$+<=>^|~`) or a P* category.
            p.split(behavior: behavior) { s in
                let v = s.value
                if v < 0x80 {
                    return (0x21...0x2F).contains(v) || (0x3A...0x40).contains(v) || (0x5B...0x60).contains(v) || (0x7B...0x7E).contains(v)
                }
                return UnicodeClasses.of(s) & UnicodeClasses.punctuation != 0
            }
        case .sequence:
            break
        }
    }

    /// The ByteLevel step at the top level or in a sequence (its `add_prefix_space` / `use_regex`).
    var byteLevelOptions: (addPrefixSpace: Bool, useRegex: Bool)? {
        switch self {
        case .byteLevel(let a, let u): return (a, u)
        case .sequence(let list): return list.lazy.compactMap(\.byteLevelOptions).first
        default: return nil
        }
    }
}

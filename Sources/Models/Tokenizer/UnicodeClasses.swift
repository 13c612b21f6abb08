/// Unicode general categories and White_Space as bit masks, looked up from a table for the Basic
/// Multilingual Plane (built once) and from the standard library's properties above it. The split
/// patterns of real tokenizers ask "is this a letter / number / space" for every character of the
/// input, so this lookup is the hot path of pre-tokenization.
enum UnicodeClasses {
    // One bit per general category, in `Unicode.GeneralCategory` order, plus White_Space.
    static let lu: UInt32 = 1 << 0, ll: UInt32 = 1 << 1, lt: UInt32 = 1 << 2, lm: UInt32 = 1 << 3, lo: UInt32 = 1 << 4
    static let mn: UInt32 = 1 << 5, mc: UInt32 = 1 << 6, me: UInt32 = 1 << 7
    static let nd: UInt32 = 1 << 8, nl: UInt32 = 1 << 9, no: UInt32 = 1 << 10
    static let pc: UInt32 = 1 << 11, pd: UInt32 = 1 << 12, ps: UInt32 = 1 << 13, pe: UInt32 = 1 << 14
    static let pi: UInt32 = 1 << 15, pf: UInt32 = 1 << 16, po: UInt32 = 1 << 17
    static let sm: UInt32 = 1 << 18, sc: UInt32 = 1 << 19, sk: UInt32 = 1 << 20, so: UInt32 = 1 << 21
    static let zs: UInt32 = 1 << 22, zl: UInt32 = 1 << 23, zp: UInt32 = 1 << 24
    static let cc: UInt32 = 1 << 25, cf: UInt32 = 1 << 26, cs: UInt32 = 1 << 27, co: UInt32 = 1 << 28, cn: UInt32 = 1 << 29
    /// The White_Space property: Oniguruma's `\s` and Rust's `char::is_whitespace`.
    static let whiteSpace: UInt32 = 1 << 30

    static let letter = lu | ll | lt | lm | lo
    static let mark = mn | mc | me
    static let number = nd | nl | no
    static let punctuation = pc | pd | ps | pe | pi | pf | po
    static let symbol = sm | sc | sk | so
    static let separator = zs | zl | zp
    static let other = cc | cf | cs | co | cn
    /// Oniguruma's `\w`: letters, marks, decimal digits and connector punctuation.
    static let word = letter | mark | nd | pc

    /// The masks of the Basic Multilingual Plane; hot loops take a local copy of the reference, since
    /// every access to a static goes through a lazy-initialization check.
    static let bmp: [UInt32] = (0..<0x10000).map { v in
        guard let s = Unicode.Scalar(UInt32(v)) else { return cs }  // surrogates
        return compute(s)
    }

    static func compute(_ s: Unicode.Scalar) -> UInt32 {
        let p = s.properties
        let category: UInt32
        switch p.generalCategory {
        case .uppercaseLetter: category = lu
        case .lowercaseLetter: category = ll
        case .titlecaseLetter: category = lt
        case .modifierLetter: category = lm
        case .otherLetter: category = lo
        case .nonspacingMark: category = mn
        case .spacingMark: category = mc
        case .enclosingMark: category = me
        case .decimalNumber: category = nd
        case .letterNumber: category = nl
        case .otherNumber: category = no
        case .connectorPunctuation: category = pc
        case .dashPunctuation: category = pd
        case .openPunctuation: category = ps
        case .closePunctuation: category = pe
        case .initialPunctuation: category = pi
        case .finalPunctuation: category = pf
        case .otherPunctuation: category = po
        case .mathSymbol: category = sm
        case .currencySymbol: category = sc
        case .modifierSymbol: category = sk
        case .otherSymbol: category = so
        case .spaceSeparator: category = zs
        case .lineSeparator: category = zl
        case .paragraphSeparator: category = zp
        case .control: category = cc
        case .format: category = cf
        case .surrogate: category = cs
        case .privateUse: category = co
        case .unassigned: category = cn
        @unknown default: category = cn
        }
        return category | (p.isWhitespace ? whiteSpace : 0)
    }

    /// The category bit and White_Space bit of `s`.
    @inline(__always) static func of(_ s: Unicode.Scalar) -> UInt32 {
        s.value < 0x10000 ? bmp[Int(s.value)] : compute(s)
    }

    @inline(__always) static func isWhitespace(_ s: Unicode.Scalar) -> Bool { of(s) & whiteSpace != 0 }

    /// The masks `\p{Name}` names (short and long category names, as Oniguruma accepts them).
    static func property(named raw: String) -> UInt32? {
        let name = String(raw.lowercased().filter { $0 != "_" && $0 != " " && $0 != "-" })
        let table: [String: UInt32] = [
            "l": letter, "letter": letter, "lu": lu, "uppercaseletter": lu, "ll": ll, "lowercaseletter": ll,
            "lt": lt, "titlecaseletter": lt, "lm": lm, "modifierletter": lm, "lo": lo, "otherletter": lo,
            "l&": lu | ll | lt, "lc": lu | ll | lt, "casedletter": lu | ll | lt,
            "m": mark, "mark": mark, "combiningmark": mark, "mn": mn, "nonspacingmark": mn, "mc": mc, "spacingmark": mc,
            "me": me, "enclosingmark": me,
            "n": number, "number": number, "nd": nd, "decimalnumber": nd, "digit": nd, "nl": nl, "letternumber": nl,
            "no": no, "othernumber": no,
            "p": punctuation, "punctuation": punctuation, "punct": punctuation, "pc": pc, "connectorpunctuation": pc,
            "pd": pd, "dashpunctuation": pd, "ps": ps, "openpunctuation": ps, "pe": pe, "closepunctuation": pe,
            "pi": pi, "initialpunctuation": pi, "pf": pf, "finalpunctuation": pf, "po": po, "otherpunctuation": po,
            "s": symbol, "symbol": symbol, "sm": sm, "mathsymbol": sm, "sc": sc, "currencysymbol": sc,
            "sk": sk, "modifiersymbol": sk, "so": so, "othersymbol": so,
            "z": separator, "separator": separator, "zs": zs, "spaceseparator": zs, "zl": zl, "lineseparator": zl,
            "zp": zp, "paragraphseparator": zp,
            "c": other, "other": other, "cc": cc, "control": cc, "cntrl": cc, "cf": cf, "format": cf,
            "cs": cs, "surrogate": cs, "co": co, "privateuse": co, "cn": cn, "unassigned": cn,
            "space": whiteSpace, "whitespace": whiteSpace, "alpha": letter | mark, "alnum": letter | mark | nd,
            "word": word, "any": UInt32.max,
        ]
        return table[name]
    }

    /// Simple case folding as far as `(?i)` in split patterns needs it: the lowercase of the uppercase,
    /// so that `ſ` (long s) folds with `s` and the Kelvin sign with `k`, as in Oniguruma.
    static func fold(_ v: UInt32) -> UInt32 {
        if v < 0x80 { return (0x41...0x5A).contains(v) ? v + 32 : v }
        guard let s = Unicode.Scalar(v) else { return v }
        func single(_ text: String) -> Unicode.Scalar? {
            let scalars = text.unicodeScalars
            return scalars.count == 1 ? scalars.first : nil
        }
        let upper = single(s.properties.uppercaseMapping) ?? s
        return (single(upper.properties.lowercaseMapping) ?? single(s.properties.lowercaseMapping) ?? s).value
    }
}

extension String {
    /// A string of `scalars`, written as UTF-8 directly (appending to a `UnicodeScalarView` one by one
    /// is several times slower).
    init<C: Collection<Unicode.Scalar>>(scalars: C) {
        self.init(unsafeUninitializedCapacity: scalars.count * 4) { buffer in
            var n = 0
            for s in scalars {
                let v = s.value
                if v < 0x80 {
                    buffer[n] = UInt8(v); n += 1
                } else if v < 0x800 {
                    buffer[n] = UInt8(0xC0 | (v >> 6)); buffer[n + 1] = UInt8(0x80 | (v & 0x3F)); n += 2
                } else if v < 0x10000 {
                    buffer[n] = UInt8(0xE0 | (v >> 12)); buffer[n + 1] = UInt8(0x80 | ((v >> 6) & 0x3F))
                    buffer[n + 2] = UInt8(0x80 | (v & 0x3F)); n += 3
                } else {
                    buffer[n] = UInt8(0xF0 | (v >> 18)); buffer[n + 1] = UInt8(0x80 | ((v >> 12) & 0x3F))
                    buffer[n + 2] = UInt8(0x80 | ((v >> 6) & 0x3F)); buffer[n + 3] = UInt8(0x80 | (v & 0x3F)); n += 4
                }
            }
            return n
        }
    }
}

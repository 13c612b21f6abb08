/// Splits template source into text and tag tokens the way jinja2's lexer does under the settings
/// transformers uses: `trim_blocks` (the newline after a block or comment tag is dropped),
/// `lstrip_blocks` (spaces before a block or comment tag that starts its line are dropped), `-`/`+`
/// whitespace control on every tag, and no trailing newline (`keep_trailing_newline=False`).
struct TemplateToken: Sendable {
    enum Kind: Sendable, Equatable {
        case text(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String)
        case string(String)
        case int(Int)
        case float(Double)
        /// An operator or punctuation: `+`, `//`, `==`, `(`, `.`, `|`, ...
        case op(String)
        case eof
    }
    var kind: Kind
    var line: Int
    var column: Int
}

struct TemplateLexer {
    private let bytes: [UInt8]
    private var pos = 0
    private var tokens: [TemplateToken] = []
    /// Whether the next text starts at the beginning of a line (for `lstrip_blocks`).
    private var lineStarting = true
    /// Where the last emitted token was, so positions are counted incrementally (columns count
    /// Unicode scalars).
    private var positionCache = (offset: 0, line: 1, column: 1)

    init(source: String) {
        var bytes = Array(source.utf8)
        // jinja2 normalises newlines to "\n" and drops one trailing newline.
        if bytes.contains(0x0D) {
            bytes = Array(source.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n").utf8)
        }
        if bytes.last == 0x0A { bytes.removeLast() }
        self.bytes = bytes
    }

    static func tokenize(_ source: String) throws(ChatTemplateError) -> [TemplateToken] {
        var lexer = TemplateLexer(source: source)
        try lexer.run()
        return lexer.tokens
    }

    private func location(_ offset: Int) -> (line: Int, column: Int) {
        var (line, column) = (1, 1)
        for i in 0..<min(offset, bytes.count) {
            if bytes[i] == 0x0A {
                line += 1
                column = 1
            } else if bytes[i] & 0xC0 != 0x80 {
                column += 1
            }
        }
        return (line, column)
    }

    private func error(_ message: String, at offset: Int) -> ChatTemplateError {
        let (line, column) = location(offset)
        return .syntax(message: message, line: line, column: column)
    }

    private mutating func emit(_ kind: TemplateToken.Kind, at offset: Int) {
        if offset < positionCache.offset { positionCache = (0, 1, 1) }
        var (line, column) = (positionCache.line, positionCache.column)
        for i in positionCache.offset..<min(offset, bytes.count) {
            if bytes[i] == 0x0A {
                line += 1
                column = 1
            } else if bytes[i] & 0xC0 != 0x80 {
                column += 1
            }
        }
        positionCache = (offset, line, column)
        tokens.append(TemplateToken(kind: kind, line: line, column: column))
    }

    private func byte(_ i: Int) -> UInt8? { i < bytes.count ? bytes[i] : nil }

    private func matches(_ literal: String, at i: Int) -> Bool {
        let l = Array(literal.utf8)
        guard i + l.count <= bytes.count else { return false }
        for k in 0..<l.count where bytes[i + k] != l[k] { return false }
        return true
    }

    private static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D || b == 0x0B || b == 0x0C }

    private func skipSpaces(from i: Int) -> Int {
        var i = i
        while let b = byte(i), Self.isSpace(b) { i += 1 }
        return i
    }

    /// Index of the next `{{`, `{%` or `{#` at or after `from`.
    private func nextTagStart(from: Int) -> Int? {
        var i = from
        while i + 1 < bytes.count {
            if bytes[i] == UInt8(ascii: "{") {
                let n = bytes[i + 1]
                if n == UInt8(ascii: "{") || n == UInt8(ascii: "%") || n == UInt8(ascii: "#") { return i }
            }
            i += 1
        }
        return nil
    }

    /// Emits the text before a tag, applying the tag's `-` sign or `lstrip_blocks`.
    private mutating func emitText(_ start: Int, _ end: Int, sign: UInt8?, isVariable: Bool) {
        var text = String(decoding: bytes[start..<end], as: UTF8.self)
        if sign == UInt8(ascii: "-") {
            while let last = text.last, last.isWhitespace { text.removeLast() }
        } else if sign != UInt8(ascii: "+") && !isVariable {
            let lineStart = text.lastIndex(of: "\n").map { text.index(after: $0) }
            if lineStart != nil || lineStarting {
                let from = lineStart ?? text.startIndex
                let tail = text[from...]
                if !tail.isEmpty && tail.allSatisfy({ $0.isWhitespace }) { text = String(text[..<from]) }
            }
        }
        if !text.isEmpty { emit(.text(text), at: start) }
    }

    private mutating func run() throws(ChatTemplateError) {
        while pos < bytes.count {
            guard let tag = nextTagStart(from: pos) else {
                emit(.text(String(decoding: bytes[pos...], as: UTF8.self)), at: pos)
                return
            }
            let kind = bytes[tag + 1]
            var inner = tag + 2
            var sign: UInt8? = nil
            if let b = byte(inner), b == UInt8(ascii: "-") || b == UInt8(ascii: "+") {
                sign = b
                inner += 1
            }
            if kind == UInt8(ascii: "%"), let rawEnd = rawBlockEnd(after: inner) {
                emitText(pos, tag, sign: sign, isVariable: false)
                try lexRaw(bodyStart: rawEnd, tagStart: tag)
                continue
            }
            emitText(pos, tag, sign: sign, isVariable: kind == UInt8(ascii: "{"))
            switch kind {
            case UInt8(ascii: "#"):
                try lexComment(from: inner, tagStart: tag)
            case UInt8(ascii: "{"):
                emit(.variableBegin, at: tag)
                pos = inner
                try lexTag(isBlock: false, tagStart: tag)
            default:
                emit(.blockBegin, at: tag)
                pos = inner
                try lexTag(isBlock: true, tagStart: tag)
            }
        }
    }

    /// After the end of a tag: `-` eats all following whitespace, `+` nothing, otherwise a block or
    /// comment eats one newline (`trim_blocks`).
    private mutating func finishTag(at end: Int, sign: UInt8?, trimNewline: Bool) {
        var i = end
        if sign == UInt8(ascii: "-") {
            i = skipSpaces(from: i)
        } else if sign != UInt8(ascii: "+") && trimNewline && byte(i) == 0x0A {
            i += 1
        }
        lineStarting = i > 0 && bytes[i - 1] == 0x0A
        pos = i
    }

    private mutating func lexComment(from start: Int, tagStart: Int) throws(ChatTemplateError) {
        var i = start
        while i + 1 < bytes.count {
            if bytes[i] == UInt8(ascii: "#") && bytes[i + 1] == UInt8(ascii: "}") {
                var sign: UInt8? = nil
                if i > start, bytes[i - 1] == UInt8(ascii: "-") || bytes[i - 1] == UInt8(ascii: "+") { sign = bytes[i - 1] }
                finishTag(at: i + 2, sign: sign, trimNewline: true)
                return
            }
            i += 1
        }
        throw error("missing end of comment tag", at: tagStart)
    }

    /// If `{%` at this point opens `raw` (`{% raw %}`, `{%- raw -%}`), the index after its `%}`.
    private mutating func rawBlockEnd(after inner: Int) -> Int? {
        var i = skipSpaces(from: inner)
        guard matches("raw", at: i) else { return nil }
        i = skipSpaces(from: i + 3)
        if matches("-%}", at: i) { return skipSpaces(from: i + 3) }
        if matches("%}", at: i) { return i + 2 }
        return nil
    }

    private mutating func lexRaw(bodyStart: Int, tagStart: Int) throws(ChatTemplateError) {
        var i = bodyStart
        while let tag = nextTagStart(from: i) {
            guard bytes[tag + 1] == UInt8(ascii: "%") else { i = tag + 1; continue }
            var j = tag + 2
            var sign: UInt8? = nil
            if let b = byte(j), b == UInt8(ascii: "-") || b == UInt8(ascii: "+") { sign = b; j += 1 }
            j = skipSpaces(from: j)
            guard matches("endraw", at: j) else { i = tag + 1; continue }
            j = skipSpaces(from: j + 6)
            var endSign: UInt8? = nil
            if let b = byte(j), b == UInt8(ascii: "-") || b == UInt8(ascii: "+") { endSign = b; j += 1 }
            guard matches("%}", at: j) else { i = tag + 1; continue }
            lineStarting = bodyStart > 0 && bytes[bodyStart - 1] == 0x0A
            emitText(bodyStart, tag, sign: sign, isVariable: false)
            finishTag(at: j + 2, sign: endSign, trimNewline: true)
            return
        }
        throw error("missing endraw for raw block", at: tagStart)
    }

    private static let operators: [String] = [
        "//", "**", "==", "!=", ">=", "<=",
        "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";",
    ]

    private mutating func lexTag(isBlock: Bool, tagStart: Int) throws(ChatTemplateError) {
        var depth = 0
        while true {
            pos = skipSpaces(from: pos)
            guard pos < bytes.count else {
                throw error(isBlock ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'", at: tagStart)
            }
            if depth == 0 {
                let close = isBlock ? "%}" : "}}"
                if matches("-" + close, at: pos) {
                    emit(isBlock ? .blockEnd : .variableEnd, at: pos)
                    finishTag(at: pos + 3, sign: UInt8(ascii: "-"), trimNewline: isBlock)
                    return
                }
                if isBlock && matches("+%}", at: pos) {
                    emit(.blockEnd, at: pos)
                    finishTag(at: pos + 3, sign: UInt8(ascii: "+"), trimNewline: true)
                    return
                }
                if matches(close, at: pos) {
                    emit(isBlock ? .blockEnd : .variableEnd, at: pos)
                    finishTag(at: pos + 2, sign: nil, trimNewline: isBlock)
                    return
                }
            }
            let b = bytes[pos]
            if b == UInt8(ascii: "'") || b == UInt8(ascii: "\"") {
                try lexString(quote: b)
            } else if (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) {
                try lexNumber()
            } else if Self.isNameStart(b) {
                let start = pos
                while let c = byte(pos), Self.isNameStart(c) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) { pos += 1 }
                emit(.name(String(decoding: bytes[start..<pos], as: UTF8.self)), at: start)
            } else if let op = Self.operators.first(where: { matches($0, at: pos) }) {
                if op == "(" || op == "[" || op == "{" { depth += 1 }
                if op == ")" || op == "]" || op == "}" {
                    if depth == 0 { throw error("unexpected '\(op)'", at: pos) }
                    depth -= 1
                }
                emit(.op(op), at: pos)
                pos += op.utf8.count
            } else {
                throw error("unexpected char \(pythonStringRepr(String(decoding: [b], as: UTF8.self)))", at: pos)
            }
        }
    }

    private static func isNameStart(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z")) || b == UInt8(ascii: "_") || b >= 0x80
    }

    private mutating func lexNumber() throws(ChatTemplateError) {
        let start = pos
        func isDigit(_ b: UInt8?) -> Bool { b.map { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } ?? false }
        while isDigit(byte(pos)) || byte(pos) == UInt8(ascii: "_") { pos += 1 }
        var isFloat = false
        if byte(pos) == UInt8(ascii: "."), isDigit(byte(pos + 1)) {
            isFloat = true
            pos += 1
            while isDigit(byte(pos)) || byte(pos) == UInt8(ascii: "_") { pos += 1 }
        }
        if let e = byte(pos), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            var j = pos + 1
            if let s = byte(j), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { j += 1 }
            if isDigit(byte(j)) {
                isFloat = true
                pos = j
                while isDigit(byte(pos)) { pos += 1 }
            }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self).replacingOccurrences(of: "_", with: "")
        if isFloat {
            guard let d = Double(text) else { throw error("invalid number \(text)", at: start) }
            emit(.float(d), at: start)
        } else {
            guard let i = Int(text) else { throw error("integer \(text) is too large", at: start) }
            emit(.int(i), at: start)
        }
    }

    /// A string literal with Python's escapes (`\n`, `\t`, `\\`, `\'`, `\xNN`, `\uNNNN`, ...).
    private mutating func lexString(quote: UInt8) throws(ChatTemplateError) {
        let start = pos
        pos += 1
        var raw: [UInt8] = []
        while true {
            guard let b = byte(pos) else { throw error("unterminated string", at: start) }
            if b == quote { pos += 1; break }
            if b == UInt8(ascii: "\\"), let n = byte(pos + 1) {
                raw.append(b)
                raw.append(n)
                pos += 2
                continue
            }
            raw.append(b)
            pos += 1
        }
        emit(.string(try Self.unescape(String(decoding: raw, as: UTF8.self), at: start, lexer: self)), at: start)
    }

    private static func unescape(_ s: String, at offset: Int, lexer: TemplateLexer) throws(ChatTemplateError) -> String {
        guard s.contains("\\") else { return s }
        var out = String.UnicodeScalarView()
        let scalars = Array(s.unicodeScalars)
        var i = 0
        func hexValue(_ count: Int) -> UInt32? {
            guard i + 1 + count <= scalars.count else { return nil }
            return UInt32(String(String.UnicodeScalarView(scalars[(i + 1)..<(i + 1 + count)])), radix: 16)
        }
        while i < scalars.count {
            let c = scalars[i]
            guard c == "\\", i + 1 < scalars.count else { out.append(c); i += 1; continue }
            let n = scalars[i + 1]
            i += 1
            switch n {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "v": out.append("\u{0B}")
            case "\n": break
            case "x", "u", "U":
                let count = n == "x" ? 2 : n == "u" ? 4 : 8
                guard let v = hexValue(count), let scalar = Unicode.Scalar(v) else {
                    throw lexer.error("invalid \\\(n) escape in string", at: offset)
                }
                out.append(scalar)
                i += count
            case "0"..."7":
                var v: UInt32 = 0
                var k = 0
                while k < 3, i + k < scalars.count, ("0"..."7").contains(scalars[i + k]) {
                    v = v * 8 + (scalars[i + k].value - 48)
                    k += 1
                }
                out.append(Unicode.Scalar(v)!)
                i += k - 1
            default:
                out.append("\\")
                out.append(n)
            }
            i += 1
        }
        return String(out)
    }
}

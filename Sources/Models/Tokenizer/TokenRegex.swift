/// A small backtracking regex engine over Unicode scalars, for the patterns `tokenizer.json` files
/// carry (Oniguruma syntax, as Hugging Face tokenizers compiles them): alternation, groups
/// (`(…)`, `(?:…)`, `(?i:…)`, `(?i)`), greedy and lazy quantifiers (`* + ? {n} {n,} {n,m}`), classes
/// with ranges, `\s \d \w \S \D \W`, `\p{…}` / `\P{…}` general categories, `.`, anchors
/// (`^ $ \A \z \Z`) and lookahead `(?=…)` / `(?!…)`. Matching is leftmost-first, as Oniguruma: at the
/// leftmost position, the first alternative that succeeds (trying greedy counts longest first).
///
/// Anything else (lookbehind, backreferences, possessive quantifiers, scripts) is refused with a
/// clear error rather than matched differently. The two split patterns of Qwen2 and Llama-3 have a
/// hand-written matcher (`SplitPatterns`); this engine is the general fallback and their reference.
struct TokenRegex: Sendable {
    let pattern: String
    /// The hand-written matcher of this pattern, when it is one of the well-known ones.
    let known: KnownSplitPattern?
    fileprivate let program: Program

    init(_ pattern: String) throws(TokenizerError) {
        self.pattern = pattern
        known = KnownSplitPattern(pattern: pattern)
        var parser = Parser(Array(pattern.unicodeScalars))
        let node: Node
        do {
            node = try parser.parseAll()
        } catch {
            throw TokenizerError(.unsupported, "unsupported regex \(pattern.debugDescription): \(error.message)")
        }
        var compiler = Compiler()
        compiler.emit(node)
        compiler.code.append(.match)
        program = Program(code: compiler.code, classes: compiler.classes, lookarounds: compiler.lookarounds,
                          registers: compiler.registers)
    }

    /// The end of a match starting exactly at `start`, within `text[bounds]`.
    func match(_ text: [Unicode.Scalar], at start: Int, bounds: Range<Int>) -> Int? {
        text.withUnsafeBufferPointer { program.run(program.code, 0, $0, start, bounds) }
    }

    /// Non-overlapping matches in `text[bounds]`, leftmost first (as Oniguruma's `find_iter`; an empty
    /// match moves the search on by one character).
    func matches(in text: [Unicode.Scalar], bounds: Range<Int>) -> [Range<Int>] {
        var out: [Range<Int>] = []
        text.withUnsafeBufferPointer { buf in
            var pos = bounds.lowerBound
            while pos <= bounds.upperBound {
                var found: Range<Int>?
                var start = pos
                while start <= bounds.upperBound {
                    if let end = program.run(program.code, 0, buf, start, bounds) {
                        found = start..<end
                        break
                    }
                    start += 1
                }
                guard let m = found else { break }
                out.append(m)
                pos = m.isEmpty ? m.upperBound + 1 : m.upperBound
            }
        }
        return out
    }
}

struct RegexSyntaxError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

// MARK: - Syntax tree

/// A character class: items (ranges and category masks, each possibly negated), negated as a whole.
struct CharClass {
    var negated = false
    var ranges: [ClosedRange<UInt32>] = []
    /// Category masks (`UnicodeClasses`) that match when the scalar has any of their bits.
    var masks: [UInt32] = []
    /// Category masks that match when the scalar has none of their bits (`\S`, `\P{L}`).
    var negatedMasks: [UInt32] = []
    var fold = false

    func contains(_ s: Unicode.Scalar) -> Bool {
        var hit = containsExactly(s.value, UnicodeClasses.of(s))
        if !hit && fold {
            let f = UnicodeClasses.fold(s.value)
            if f != s.value, let fs = Unicode.Scalar(f) { hit = containsExactly(f, UnicodeClasses.of(fs)) }
            if !hit {
                // An uppercase range member ([A-Z]) folds from its lowercase.
                for r in ranges where !hit && r.count <= 512 {
                    for v in r where UnicodeClasses.fold(v) == f { hit = true; break }
                }
            }
        }
        return hit != negated
    }

    private func containsExactly(_ v: UInt32, _ bits: UInt32) -> Bool {
        for r in ranges where r.contains(v) { return true }
        for m in masks where bits & m != 0 { return true }
        for m in negatedMasks where bits & m == 0 { return true }
        return false
    }
}

indirect enum Node {
    case empty
    case char(UInt32, fold: Bool)
    case set(CharClass)
    case any
    case sequence([Node])
    case alternation([Node])
    case loop(Node, min: Int, max: Int?, greedy: Bool)
    case lookahead(Node, negative: Bool)
    case lineStart, lineEnd, textStart, textEnd, textEndNewline

    var canBeEmpty: Bool {
        switch self {
        case .empty, .lookahead, .lineStart, .lineEnd, .textStart, .textEnd, .textEndNewline: true
        case .char, .set, .any: false
        case .sequence(let nodes): nodes.allSatisfy(\.canBeEmpty)
        case .alternation(let nodes): nodes.contains(where: \.canBeEmpty)
        case .loop(let node, let min, _, _): min == 0 || node.canBeEmpty
        }
    }
}

// MARK: - Parser

private struct Parser {
    let s: [Unicode.Scalar]
    var i = 0
    var fold = false

    init(_ s: [Unicode.Scalar]) { self.s = s }

    mutating func parseAll() throws(RegexSyntaxError) -> Node {
        let node = try parseAlternation()
        if i < s.count { throw RegexSyntaxError("unbalanced ')' at \(i)") }
        return node
    }

    private func peek(_ k: Int = 0) -> Unicode.Scalar? { i + k < s.count ? s[i + k] : nil }

    mutating func parseAlternation() throws(RegexSyntaxError) -> Node {
        var branches = [try parseSequence()]
        while peek() == "|" {
            i += 1
            branches.append(try parseSequence())
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    mutating func parseSequence() throws(RegexSyntaxError) -> Node {
        var items: [Node] = []
        while let c = peek(), c != "|", c != ")" {
            // `(?i)` switches case folding on for the rest of the enclosing group.
            if c == "(" && peek(1) == "?" && (peek(2) == "i" || peek(2) == "-") && (peek(3) == ")" || peek(4) == ")") {
                if peek(2) == "i" && peek(3) == ")" { fold = true; i += 4; continue }
                if peek(2) == "-" && peek(3) == "i" && peek(4) == ")" { fold = false; i += 5; continue }
            }
            var atom = try parseAtom()
            atom = try parseQuantifiers(atom)
            items.append(atom)
        }
        return items.count == 1 ? items[0] : items.isEmpty ? .empty : .sequence(items)
    }

    mutating func parseQuantifiers(_ atom: Node) throws(RegexSyntaxError) -> Node {
        var node = atom
        while let c = peek() {
            var min = 0, max: Int? = nil
            switch c {
            case "*": i += 1
            case "+": i += 1; min = 1
            case "?": i += 1; max = 1
            case "{":
                guard let (lo, hi, length) = counted() else { return node }
                i += length
                min = lo
                max = hi
            default: return node
            }
            var greedy = true
            if peek() == "?" { greedy = false; i += 1 } else if peek() == "+" {
                throw RegexSyntaxError("possessive quantifiers are not supported")
            }
            if let max, max < min { throw RegexSyntaxError("quantifier {\(min),\(max)} has max < min") }
            if min > 1000 || (max ?? 0) > 1000 { throw RegexSyntaxError("counted repetition above 1000") }
            node = .loop(node, min: min, max: max, greedy: greedy)
        }
        return node
    }

    /// `{n}`, `{n,}`, `{n,m}` at `i`: (min, max, length), or nil where `{` is a literal (Oniguruma).
    private func counted() -> (Int, Int?, Int)? {
        var k = i + 1
        func number() -> Int? {
            var v = 0, digits = 0
            while k < s.count, let d = Int(String(s[k])), s[k].isASCII, digits < 6 { v = v * 10 + d; k += 1; digits += 1 }
            return digits > 0 ? v : nil
        }
        let lo = number()
        if k < s.count && s[k] == "}" {
            guard let lo else { return nil }
            return (lo, lo, k + 1 - i)
        }
        guard k < s.count, s[k] == "," else { return nil }
        k += 1
        let hi = number()
        guard k < s.count, s[k] == "}", lo != nil || hi != nil else { return nil }
        return (lo ?? 0, hi, k + 1 - i)
    }

    mutating func parseAtom() throws(RegexSyntaxError) -> Node {
        let c = s[i]
        switch c {
        case "(": return try parseGroup()
        case "[": i += 1; return .set(try parseClass())
        case ".": i += 1; return .any
        case "^": i += 1; return .lineStart
        case "$": i += 1; return .lineEnd
        case "\\": return try parseEscape(inClass: false).node(fold: fold)
        case "*", "+", "?": throw RegexSyntaxError("quantifier '\(c)' with nothing to repeat at \(i)")
        default:
            i += 1
            return .char(fold ? UnicodeClasses.fold(c.value) : c.value, fold: fold)
        }
    }

    mutating func parseGroup() throws(RegexSyntaxError) -> Node {
        i += 1  // (
        let savedFold = fold
        defer { fold = savedFold }
        var lookahead: Bool? = nil
        if peek() == "?" {
            i += 1
            switch peek() {
            case ":": i += 1
            case "=": i += 1; lookahead = false
            case "!": i += 1; lookahead = true
            case "<" where peek(1) == "=" || peek(1) == "!":
                throw RegexSyntaxError("lookbehind is not supported")
            case "<", "P":
                // Named group: the name does not matter here.
                while let ch = peek(), ch != ">" { i += 1 }
                guard peek() == ">" else { throw RegexSyntaxError("unterminated group name") }
                i += 1
            case "i", "-":
                // (?i:…), (?-i:…), (?i-…:…)
                var on = true
                while let ch = peek(), ch != ":" {
                    switch ch {
                    case "i": fold = on
                    case "-": on = false
                    case "m", "x", "s": throw RegexSyntaxError("group option '\(ch)' is not supported")
                    default: throw RegexSyntaxError("unsupported group option '\(ch)'")
                    }
                    i += 1
                }
                guard peek() == ":" else { throw RegexSyntaxError("unterminated group options") }
                i += 1
            default:
                throw RegexSyntaxError("unsupported group '(?\(peek().map { String($0) } ?? "")'")
            }
        }
        let inner = try parseAlternation()
        guard peek() == ")" else { throw RegexSyntaxError("missing ')'") }
        i += 1
        if let negative = lookahead { return .lookahead(inner, negative: negative) }
        return inner
    }

    enum Escape {
        case scalar(UInt32)
        case cls(CharClass)
        case anchor(Node)

        func node(fold: Bool) -> Node {
            switch self {
            case .scalar(let v): return .char(fold ? UnicodeClasses.fold(v) : v, fold: fold)
            case .cls(var c): c.fold = fold; return .set(c)
            case .anchor(let n): return n
            }
        }
    }

    mutating func parseEscape(inClass: Bool) throws(RegexSyntaxError) -> Escape {
        i += 1  // backslash
        guard let c = peek() else { throw RegexSyntaxError("trailing backslash") }
        i += 1
        func cls(_ masks: [UInt32] = [], negatedMasks: [UInt32] = []) -> Escape {
            .cls(CharClass(masks: masks, negatedMasks: negatedMasks))
        }
        switch c {
        case "n": return .scalar(0x0A)
        case "r": return .scalar(0x0D)
        case "t": return .scalar(0x09)
        case "f": return .scalar(0x0C)
        case "v": return .scalar(0x0B)
        case "a": return .scalar(0x07)
        case "e": return .scalar(0x1B)
        case "0": return .scalar(0)
        case "s": return cls([UnicodeClasses.whiteSpace])
        case "S": return cls(negatedMasks: [UnicodeClasses.whiteSpace])
        case "d": return cls([UnicodeClasses.nd])
        case "D": return cls(negatedMasks: [UnicodeClasses.nd])
        case "w": return cls([UnicodeClasses.word])
        case "W": return cls(negatedMasks: [UnicodeClasses.word])
        case "h": return .cls(CharClass(ranges: [0x30...0x39, 0x41...0x46, 0x61...0x66]))
        case "p", "P":
            var negate = c == "P"
            guard peek() == "{" else { throw RegexSyntaxError("\\\(c) without {name}") }
            i += 1
            var name = ""
            while let ch = peek(), ch != "}" { name.unicodeScalars.append(ch); i += 1 }
            guard peek() == "}" else { throw RegexSyntaxError("unterminated \\\(c){") }
            i += 1
            if name.hasPrefix("^") { negate.toggle(); name.removeFirst() }
            guard let mask = UnicodeClasses.property(named: name) else {
                throw RegexSyntaxError("unsupported property \\\(c){\(name)}")
            }
            return negate ? cls(negatedMasks: [mask]) : cls([mask])
        case "x":
            var hex = ""
            if peek() == "{" {
                i += 1
                while let ch = peek(), ch != "}" { hex.unicodeScalars.append(ch); i += 1 }
                i += 1
            } else {
                for _ in 0..<2 { if let ch = peek() { hex.unicodeScalars.append(ch); i += 1 } }
            }
            guard let v = UInt32(hex, radix: 16), Unicode.Scalar(v) != nil else { throw RegexSyntaxError("bad \\x escape") }
            return .scalar(v)
        case "u":
            var hex = ""
            for _ in 0..<4 { if let ch = peek() { hex.unicodeScalars.append(ch); i += 1 } }
            guard let v = UInt32(hex, radix: 16), Unicode.Scalar(v) != nil else { throw RegexSyntaxError("bad \\u escape") }
            return .scalar(v)
        case "A" where !inClass: return .anchor(.textStart)
        case "z" where !inClass: return .anchor(.textEnd)
        case "Z" where !inClass: return .anchor(.textEndNewline)
        case "b", "B", "G", "k", "K", "R", "X", "1", "2", "3", "4", "5", "6", "7", "8", "9":
            throw RegexSyntaxError("escape \\\(c) is not supported")
        default:
            if c.properties.isAlphabetic || c.properties.numericType != nil {
                throw RegexSyntaxError("escape \\\(c) is not supported")
            }
            return .scalar(c.value)  // an escaped punctuation character stands for itself
        }
    }

    mutating func parseClass() throws(RegexSyntaxError) -> CharClass {
        var cls = CharClass()
        cls.fold = fold
        if peek() == "^" { cls.negated = true; i += 1 }
        var first = true
        while let c = peek(), c != "]" || first {
            first = false
            if c == "[" {
                if peek(1) == ":" { throw RegexSyntaxError("POSIX bracket classes are not supported") }
                throw RegexSyntaxError("nested character classes are not supported")
            }
            if c == "&" && peek(1) == "&" { throw RegexSyntaxError("class intersection is not supported") }
            let low: UInt32
            if c == "\\" {
                switch try parseEscape(inClass: true) {
                case .scalar(let v): low = v
                case .cls(let inner):
                    cls.ranges += inner.ranges
                    cls.masks += inner.masks
                    cls.negatedMasks += inner.negatedMasks
                    continue
                case .anchor: throw RegexSyntaxError("anchor inside a class")
                }
            } else {
                low = c.value
                i += 1
            }
            // A range a-b (a '-' before ']' is a literal).
            if peek() == "-", let next = peek(1), next != "]" {
                i += 1
                let high: UInt32
                if next == "\\" {
                    guard case .scalar(let v) = try parseEscape(inClass: true) else {
                        throw RegexSyntaxError("a class cannot end a range")
                    }
                    high = v
                } else {
                    high = next.value
                    i += 1
                }
                guard low <= high else { throw RegexSyntaxError("empty range in class") }
                cls.ranges.append(low...high)
            } else {
                cls.ranges.append(low...low)
            }
        }
        guard peek() == "]" else { throw RegexSyntaxError("missing ']'") }
        i += 1
        return cls
    }
}

// MARK: - Compiler and backtracking machine

private enum Instruction {
    case char(UInt32)
    case charFold(UInt32)
    case set(Int)
    case any
    /// Try `first`; on failure come back and try `second`.
    case split(Int, Int)
    case jump(Int)
    case lookahead(Int, negative: Bool)
    case lineStart, lineEnd, textStart, textEnd, textEndNewline
    /// Record the position in a register (the start of one turn of a loop that may match empty).
    case mark(Int)
    /// Fail when the loop turn consumed nothing, so `(a*)*` terminates.
    case progress(Int)
    case match
}

private struct Compiler {
    var code: [Instruction] = []
    var classes: [CharClass] = []
    var lookarounds: [[Instruction]] = []
    var registers = 0

    mutating func emit(_ node: Node) {
        switch node {
        case .empty: break
        case .char(let v, let fold): code.append(fold ? .charFold(v) : .char(v))
        case .set(let c):
            classes.append(c)
            code.append(.set(classes.count - 1))
        case .any: code.append(.any)
        case .sequence(let nodes): for n in nodes { emit(n) }
        case .alternation(let branches):
            var jumps: [Int] = []
            for (k, b) in branches.enumerated() {
                if k < branches.count - 1 {
                    let split = code.count
                    code.append(.split(split + 1, -1))
                    emit(b)
                    jumps.append(code.count)
                    code.append(.jump(-1))
                    code[split] = .split(split + 1, code.count)
                } else {
                    emit(b)
                }
            }
            for j in jumps { code[j] = .jump(code.count) }
        case .loop(let body, let min, let max, let greedy):
            for _ in 0..<min { emit(body) }
            if let max {
                // Up to max-min optional copies; skipping one skips the rest.
                var exits: [Int] = []
                for _ in min..<max {
                    exits.append(code.count)
                    code.append(.split(-1, -1))
                    emit(body)
                }
                for e in exits { code[e] = greedy ? .split(e + 1, code.count) : .split(code.count, e + 1) }
            } else {
                let top = code.count
                code.append(.split(-1, -1))
                let register = body.canBeEmpty ? registers : -1
                if register >= 0 { registers += 1; code.append(.mark(register)) }
                emit(body)
                if register >= 0 { code.append(.progress(register)) }
                code.append(.jump(top))
                code[top] = greedy ? .split(top + 1, code.count) : .split(code.count, top + 1)
            }
        case .lookahead(let inner, let negative):
            var sub = Compiler()
            sub.classes = classes
            sub.lookarounds = lookarounds
            sub.registers = registers
            sub.emit(inner)
            sub.code.append(.match)
            classes = sub.classes
            lookarounds = sub.lookarounds
            registers = sub.registers
            lookarounds.append(sub.code)
            code.append(.lookahead(lookarounds.count - 1, negative: negative))
        case .lineStart: code.append(.lineStart)
        case .lineEnd: code.append(.lineEnd)
        case .textStart: code.append(.textStart)
        case .textEnd: code.append(.textEnd)
        case .textEndNewline: code.append(.textEndNewline)
        }
    }
}

private struct Program: @unchecked Sendable {
    let code: [Instruction]
    let classes: [CharClass]
    let lookarounds: [[Instruction]]
    let registers: Int

    /// Runs `code` from `pc` at `start`: the end of the first match in priority order, or nil.
    func run(_ code: [Instruction], _ startPC: Int, _ text: UnsafeBufferPointer<Unicode.Scalar>, _ start: Int,
             _ bounds: Range<Int>) -> Int? {
        // Backtrack entries: (pc, pos) to resume, or (-1 - register, old value) to restore.
        var stack: [(Int, Int)] = []
        var regs = [Int](repeating: -1, count: registers)
        var pc = startPC, pos = start
        let end = bounds.upperBound
        while true {
            var ok = true
            switch code[pc] {
            case .char(let v):
                if pos < end && text[pos].value == v { pos += 1; pc += 1 } else { ok = false }
            case .charFold(let v):
                if pos < end && UnicodeClasses.fold(text[pos].value) == v { pos += 1; pc += 1 } else { ok = false }
            case .set(let k):
                if pos < end && classes[k].contains(text[pos]) { pos += 1; pc += 1 } else { ok = false }
            case .any:
                if pos < end && text[pos] != "\n" { pos += 1; pc += 1 } else { ok = false }
            case .split(let a, let b):
                stack.append((b, pos))
                pc = a
            case .jump(let t):
                pc = t
            case .lookahead(let k, let negative):
                let found = run(lookarounds[k], 0, text, pos, bounds) != nil
                if found != negative { pc += 1 } else { ok = false }
            case .lineStart:
                if pos == bounds.lowerBound || text[pos - 1] == "\n" { pc += 1 } else { ok = false }
            case .lineEnd:
                if pos == end || text[pos] == "\n" { pc += 1 } else { ok = false }
            case .textStart:
                if pos == bounds.lowerBound { pc += 1 } else { ok = false }
            case .textEnd:
                if pos == end { pc += 1 } else { ok = false }
            case .textEndNewline:
                if pos == end || (pos == end - 1 && text[pos] == "\n") { pc += 1 } else { ok = false }
            case .mark(let r):
                stack.append((-1 - r, regs[r]))
                regs[r] = pos
                pc += 1
            case .progress(let r):
                if pos != regs[r] { pc += 1 } else { ok = false }
            case .match:
                return pos
            }
            if ok { continue }
            // Backtrack.
            while true {
                guard let (p, v) = stack.popLast() else { return nil }
                if p < 0 {
                    regs[-1 - p] = v
                } else {
                    pc = p
                    pos = v
                    break
                }
            }
        }
    }
}

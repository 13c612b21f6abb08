/// A recursive-descent parser for the jinja2 grammar (same precedence and binding as jinja2's
/// `parser.py`: filters and tests bind tighter than arithmetic, `not` looser than comparisons).
struct TemplateParser {
    private let tokens: [TemplateToken]
    private var index = 0
    /// Nesting of expressions and blocks; bounded so a pathological template fails instead of
    /// overflowing the stack.
    private var depth = 0
    private static let maxDepth = 200

    init(tokens: [TemplateToken]) {
        self.tokens = tokens + [TemplateToken(kind: .eof, line: tokens.last?.line ?? 1, column: tokens.last?.column ?? 1)]
    }

    static func parse(_ source: String) throws(ChatTemplateError) -> [TemplateNode] {
        var parser = TemplateParser(tokens: try TemplateLexer.tokenize(source))
        let (nodes, end) = try parser.parseBody(until: [])
        if let end { throw parser.error("unexpected '\(end)'") }
        return nodes
    }

    // MARK: Token helpers

    private var current: TemplateToken { tokens[index] }
    private var next: TemplateToken { tokens[min(index + 1, tokens.count - 1)] }

    private func error(_ message: String, at token: TemplateToken? = nil) -> ChatTemplateError {
        let t = token ?? current
        return .syntax(message: message, line: t.line, column: t.column)
    }

    private func describe(_ kind: TemplateToken.Kind) -> String {
        switch kind {
        case .text: "template data"
        case .variableBegin: "begin of print statement"
        case .variableEnd: "end of print statement"
        case .blockBegin: "begin of statement block"
        case .blockEnd: "end of statement block"
        case .name(let n): "'\(n)'"
        case .string(let s): pythonStringRepr(s)
        case .int(let i): String(i)
        case .float(let d): pythonFloatRepr(d)
        case .op(let o): "'\(o)'"
        case .eof: "end of template"
        }
    }

    private mutating func advance() -> TemplateToken {
        let t = current
        if index < tokens.count - 1 { index += 1 }
        return t
    }

    private func isOp(_ op: String) -> Bool { current.kind == .op(op) }
    private func isName(_ name: String) -> Bool { current.kind == .name(name) }

    private mutating func skipOp(_ op: String) -> Bool {
        if isOp(op) { index += 1; return true }
        return false
    }

    private mutating func skipName(_ name: String) -> Bool {
        if isName(name) { index += 1; return true }
        return false
    }

    private mutating func expectOp(_ op: String) throws(ChatTemplateError) {
        guard skipOp(op) else { throw error("expected '\(op)', got \(describe(current.kind))") }
    }

    private mutating func expectName() throws(ChatTemplateError) -> String {
        guard case .name(let n) = current.kind else { throw error("expected a name, got \(describe(current.kind))") }
        index += 1
        return n
    }

    private mutating func expectBlockEnd() throws(ChatTemplateError) {
        guard current.kind == .blockEnd else { throw error("expected end of statement block, got \(describe(current.kind))") }
        index += 1
    }

    // MARK: Statements

    /// Parses nodes until a block tag whose first name is in `until`; consumes `{%` and that name and
    /// returns it (nil at the end of the template).
    private mutating func parseBody(until: Set<String>) throws(ChatTemplateError) -> ([TemplateNode], String?) {
        var nodes: [TemplateNode] = []
        while true {
            switch current.kind {
            case .eof:
                if !until.isEmpty {
                    throw error("unexpected end of template, expected one of: " + until.sorted().map { "'\($0)'" }.joined(separator: ", "))
                }
                return (nodes, nil)
            case .text(let s):
                index += 1
                nodes.append(.text(s))
            case .variableBegin:
                index += 1
                let expr = try parseTuple()
                guard current.kind == .variableEnd else { throw error("expected end of print statement, got \(describe(current.kind))") }
                index += 1
                nodes.append(.output(expr))
            case .blockBegin:
                index += 1
                if case .name(let n) = current.kind, until.contains(n) {
                    index += 1
                    return (nodes, n)
                }
                if let node = try parseStatement() { nodes.append(node) }
            default:
                throw error("unexpected \(describe(current.kind))")
            }
        }
    }

    private mutating func parseStatement() throws(ChatTemplateError) -> TemplateNode? {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth else { throw error("blocks nested too deeply") }
        let start = current
        guard case .name(let keyword) = current.kind else { throw error("tag name expected") }
        index += 1
        switch keyword {
        case "if":
            var branches: [(condition: TemplateExpr, body: [TemplateNode])] = []
            var condition = try parseTuple(withConditional: false)
            while true {
                try expectBlockEnd()
                let (body, end) = try parseBody(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                switch end {
                case "elif":
                    condition = try parseTuple(withConditional: false)
                case "else":
                    try expectBlockEnd()
                    let (otherwise, _) = try parseBody(until: ["endif"])
                    try expectBlockEnd()
                    return .conditional(branches: branches, otherwise: otherwise)
                default:
                    try expectBlockEnd()
                    return .conditional(branches: branches, otherwise: [])
                }
            }
        case "for":
            let target = try parseAssignTarget(allowAttribute: false)
            guard skipName("in") else { throw error("expected 'in', got \(describe(current.kind))") }
            let iterable = try parseTuple(withConditional: false, endNames: ["recursive"])
            var filter: TemplateExpr? = nil
            if skipName("if") { filter = try parseExpression() }
            if isName("recursive") { throw error("recursive loops are not supported") }
            try expectBlockEnd()
            let (body, end) = try parseBody(until: ["endfor", "else"])
            var otherwise: [TemplateNode] = []
            if end == "else" {
                try expectBlockEnd()
                (otherwise, _) = try parseBody(until: ["endfor"])
            }
            try expectBlockEnd()
            return .loop(target: target, iterable: iterable, filter: filter, body: body, otherwise: otherwise)
        case "set":
            let target = try parseAssignTarget(allowAttribute: true)
            if skipOp("=") {
                let value = try parseTuple()
                try expectBlockEnd()
                return .assign(target, value)
            }
            let filters = try parseFilterChain()
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endset"])
            try expectBlockEnd()
            return .assignBlock(target, filters: filters, body: body)
        case "macro":
            let name = try expectName()
            let parameters = try parseSignature()
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endmacro"])
            if case .name = current.kind { index += 1 }  // `{% endmacro name %}`
            try expectBlockEnd()
            return .macro(TemplateMacro(name: name, parameters: parameters, body: body))
        case "call":
            if isOp("(") { throw error("call blocks with arguments are not supported") }
            let call = try parseExpression()
            guard case .call = call else { throw error("expected a call", at: start) }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endcall"])
            try expectBlockEnd()
            return .callBlock(call, body: body)
        case "filter":
            let filters = try parseFilterChain()
            if filters.isEmpty { throw error("expected a filter name") }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endfilter"])
            try expectBlockEnd()
            return .filterBlock(filters: filters, body: body)
        case "generation":
            // transformers' AssistantTracker extension: marks assistant text; it renders its body as is.
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endgeneration"])
            try expectBlockEnd()
            return .filterBlock(filters: [], body: body)
        case "break", "continue":
            try expectBlockEnd()
            return keyword == "break" ? .breakLoop : .continueLoop
        default:
            throw error("encountered unknown tag '\(keyword)'", at: start)
        }
    }

    private mutating func parseSignature() throws(ChatTemplateError) -> [(name: String, defaultValue: TemplateExpr?)] {
        var parameters: [(name: String, defaultValue: TemplateExpr?)] = []
        try expectOp("(")
        while !isOp(")") {
            if !parameters.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            let name = try expectName()
            parameters.append((name, skipOp("=") ? try parseExpression() : nil))
        }
        index += 1
        return parameters
    }

    private mutating func parseFilterChain() throws(ChatTemplateError) -> [(name: String, TemplateArguments)] {
        var filters: [(name: String, TemplateArguments)] = []
        var first = true
        while first || skipOp("|") {
            if first, case .blockEnd = current.kind { break }
            if first, isOp("|") { index += 1 }
            first = false
            let start = current
            var name = try expectName()
            while skipOp(".") { name += "." + (try expectName()) }
            guard TemplateBuiltins.filterNames.contains(name) else { throw error("No filter named '\(name)'.", at: start) }
            filters.append((name, isOp("(") ? try parseCallArguments() : TemplateArguments()))
        }
        return filters
    }

    private mutating func parseAssignTarget(allowAttribute: Bool) throws(ChatTemplateError) -> TemplateTarget {
        func single(_ p: inout TemplateParser) throws(ChatTemplateError) -> TemplateTarget {
            if allowAttribute, case .name(let n) = p.current.kind, p.next.kind == .op(".") {
                p.index += 2
                let attribute = try p.expectName()
                return .attribute(.name(n), attribute)
            }
            return .name(try p.expectName())
        }
        if skipOp("(") {
            var items: [TemplateTarget] = []
            while !isOp(")") {
                if !items.isEmpty { try expectOp(",") }
                if isOp(")") { break }
                items.append(try single(&self))
            }
            index += 1
            return .tuple(items)
        }
        let first = try single(&self)
        guard isOp(",") else { return first }
        var items = [first]
        while skipOp(",") {
            if case .name = current.kind { items.append(try single(&self)) } else { break }
        }
        return .tuple(items)
    }

    // MARK: Expressions

    /// Comma-separated expressions; more than one (or a trailing comma) makes a tuple.
    private mutating func parseTuple(withConditional: Bool = true, endNames: Set<String> = []) throws(ChatTemplateError) -> TemplateExpr {
        var items: [TemplateExpr] = []
        var sawComma = false
        while true {
            if !items.isEmpty {
                guard skipOp(",") else { break }
                sawComma = true
            }
            if isTupleEnd(endNames) { break }
            items.append(withConditional ? try parseExpression() : try parseOr())
        }
        if !sawComma {
            guard let only = items.first else { throw error("expected an expression, got \(describe(current.kind))") }
            return only
        }
        return .tuple(items)
    }

    private func isTupleEnd(_ endNames: Set<String>) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd, .eof: return true
        case .op(let o): return o == ")" || o == "]" || o == "}" || o == "="
        case .name(let n): return endNames.contains(n)
        default: return false
        }
    }

    private mutating func parseExpression() throws(ChatTemplateError) -> TemplateExpr {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth else { throw error("expressions nested too deeply") }
        var expr = try parseOr()
        while skipName("if") {
            let condition = try parseOr()
            let otherwise: TemplateExpr? = skipName("else") ? try parseExpression() : nil
            expr = .conditional(condition: condition, then: expr, otherwise: otherwise)
        }
        return expr
    }

    private mutating func parseOr() throws(ChatTemplateError) -> TemplateExpr {
        var expr = try parseAnd()
        while skipName("or") { expr = .or(expr, try parseAnd()) }
        return expr
    }

    private mutating func parseAnd() throws(ChatTemplateError) -> TemplateExpr {
        var expr = try parseNot()
        while skipName("and") { expr = .and(expr, try parseNot()) }
        return expr
    }

    private mutating func parseNot() throws(ChatTemplateError) -> TemplateExpr {
        if skipName("not") { return .not(try parseNot()) }
        return try parseCompare()
    }

    private mutating func parseCompare() throws(ChatTemplateError) -> TemplateExpr {
        let lhs = try parseMath1()
        var ops: [(op: String, rhs: TemplateExpr)] = []
        while true {
            if case .op(let o) = current.kind, ["==", "!=", "<", "<=", ">", ">="].contains(o) {
                index += 1
                ops.append((o, try parseMath1()))
            } else if skipName("in") {
                ops.append(("in", try parseMath1()))
            } else if isName("not"), next.kind == .name("in") {
                index += 2
                ops.append(("notin", try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? lhs : .compare(lhs, ops)
    }

    private mutating func parseMath1() throws(ChatTemplateError) -> TemplateExpr {
        var expr = try parseConcat()
        while case .op(let o) = current.kind, o == "+" || o == "-" {
            index += 1
            expr = .binary(o, expr, try parseConcat())
        }
        return expr
    }

    private mutating func parseConcat() throws(ChatTemplateError) -> TemplateExpr {
        var expr = try parseMath2()
        while skipOp("~") { expr = .binary("~", expr, try parseMath2()) }
        return expr
    }

    private mutating func parseMath2() throws(ChatTemplateError) -> TemplateExpr {
        var expr = try parsePow()
        while case .op(let o) = current.kind, ["*", "/", "//", "%"].contains(o) {
            index += 1
            expr = .binary(o, expr, try parsePow())
        }
        return expr
    }

    private mutating func parsePow() throws(ChatTemplateError) -> TemplateExpr {
        var expr = try parseUnary()
        while skipOp("**") { expr = .binary("**", expr, try parseUnary()) }
        return expr
    }

    private mutating func parseUnary(withFilter: Bool = true) throws(ChatTemplateError) -> TemplateExpr {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth else { throw error("expressions nested too deeply") }
        var expr: TemplateExpr
        if skipOp("-") {
            expr = .negate(try parseUnary(withFilter: false))
        } else if skipOp("+") {
            expr = .plus(try parseUnary(withFilter: false))
        } else {
            expr = try parsePrimary()
        }
        expr = try parsePostfix(expr)
        if withFilter { expr = try parseFilterExpr(expr) }
        return expr
    }

    private mutating func parsePrimary() throws(ChatTemplateError) -> TemplateExpr {
        let token = advance()
        switch token.kind {
        case .name(let n):
            switch n {
            case "true", "True": return .constant(.bool(true))
            case "false", "False": return .constant(.bool(false))
            case "none", "None": return .constant(.none)
            default: return .name(n)
            }
        case .string(var s):
            while case .string(let more) = current.kind {
                s += more
                index += 1
            }
            return .constant(.string(s))
        case .int(let i): return .constant(.int(i))
        case .float(let d): return .constant(.double(d))
        case .op("("):
            if skipOp(")") { return .tuple([]) }
            let expr = try parseTuple()
            try expectOp(")")
            return expr
        case .op("["):
            var items: [TemplateExpr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            index += 1
            return .list(items)
        case .op("{"):
            var items: [(key: TemplateExpr, value: TemplateExpr)] = []
            while !isOp("}") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let key = try parseExpression()
                try expectOp(":")
                items.append((key, try parseExpression()))
            }
            index += 1
            return .dict(items)
        default:
            throw error("unexpected \(describe(token.kind))", at: token)
        }
    }

    private mutating func parsePostfix(_ start: TemplateExpr) throws(ChatTemplateError) -> TemplateExpr {
        var expr = start
        while true {
            if skipOp(".") {
                switch advance().kind {
                case .name(let n): expr = .attribute(expr, n)
                case .int(let i): expr = .item(expr, .constant(.int(i)))
                default: throw error("expected name or number after '.'")
                }
            } else if skipOp("[") {
                var subscripts: [TemplateExpr] = []
                while !isOp("]") {
                    if !subscripts.isEmpty { try expectOp(",") }
                    subscripts.append(try parseSubscript(of: expr))
                }
                index += 1
                guard !subscripts.isEmpty else { throw error("expected a subscript") }
                if subscripts.count == 1, case .slice = subscripts[0] {
                    expr = subscripts[0]
                } else {
                    expr = .item(expr, subscripts.count == 1 ? subscripts[0] : .tuple(subscripts))
                }
            } else if isOp("(") {
                expr = .call(expr, try parseCallArguments())
            } else {
                return expr
            }
        }
    }

    /// One subscript: an expression, or a slice `start:stop:step` (returned as `.slice` of `base`).
    private mutating func parseSubscript(of base: TemplateExpr) throws(ChatTemplateError) -> TemplateExpr {
        var start: TemplateExpr? = nil
        if !isOp(":") {
            let e = try parseExpression()
            guard isOp(":") else { return e }
            start = e
        }
        index += 1  // ':'
        var stop: TemplateExpr? = nil
        var step: TemplateExpr? = nil
        if !isOp("]") && !isOp(",") && !isOp(":") { stop = try parseExpression() }
        if skipOp(":"), !isOp("]") && !isOp(",") { step = try parseExpression() }
        return .slice(base, start: start, stop: stop, step: step)
    }

    private mutating func parseCallArguments() throws(ChatTemplateError) -> TemplateArguments {
        try expectOp("(")
        var args = TemplateArguments()
        var first = true
        while !isOp(")") {
            if !first { try expectOp(",") }
            first = false
            if isOp(")") { break }
            if case .name(let n) = current.kind, next.kind == .op("=") {
                index += 2
                args.keyword.append((n, try parseExpression()))
            } else {
                if !args.keyword.isEmpty { throw error("positional argument follows keyword argument") }
                args.positional.append(try parseExpression())
            }
        }
        index += 1
        return args
    }

    private mutating func parseFilterExpr(_ start: TemplateExpr) throws(ChatTemplateError) -> TemplateExpr {
        var expr = start
        while true {
            if skipOp("|") {
                let start = current
                var name = try expectName()
                while skipOp(".") { name += "." + (try expectName()) }
                guard TemplateBuiltins.filterNames.contains(name) else { throw error("No filter named '\(name)'.", at: start) }
                let args = isOp("(") ? try parseCallArguments() : TemplateArguments()
                expr = .filter(expr, name: name, args)
            } else if skipName("is") {
                let negated = skipName("not")
                var name = try expectName()
                while skipOp(".") { name += "." + (try expectName()) }
                var args = TemplateArguments()
                if isOp("(") {
                    args = try parseCallArguments()
                } else if startsTestArgument() {
                    args.positional = [try parsePostfix(try parsePrimary())]
                }
                expr = .test(expr, name: name, args, negated: negated)
            } else if isOp("(") {
                expr = .call(expr, try parseCallArguments())
            } else {
                return expr
            }
        }
    }

    /// jinja2 lets a test take one argument without parentheses: `x is equalto 3`, `x is sameas none`.
    private func startsTestArgument() -> Bool {
        switch current.kind {
        case .name(let n): return !["else", "or", "and", "if", "is", "in", "not"].contains(n)
        case .string, .int, .float: return true
        case .op(let o): return o == "[" || o == "{"
        default: return false
        }
    }
}

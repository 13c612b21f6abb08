import Foundation

/// Attribute and item access, slicing, arithmetic and comparison with Python's semantics and error
/// messages (`can only concatenate str (not "list") to str`), as jinja2 evaluates them.
extension TemplateInterpreter {
    /// The longest string or list `*` may build (a template has no business making more).
    static let maxRepeatedLength = 1 << 24

    /// `obj.name`: jinja2 tries the Python attribute (a method such as `items`) and then the item.
    func getAttribute(_ object: TemplateValue, _ name: String) throws(ChatTemplateError) -> TemplateValue {
        switch object {
        case .undefined(let m):
            throw .render(m)
        case .dict(let d):
            if let method = try TemplateBuiltins.method(object, name) { return method }
            return d[name] ?? .missingAttribute(object, name)
        case .namespace(let ns):
            return ns.attributes[name] ?? .missingAttribute(object, name)
        default:
            if let method = try TemplateBuiltins.method(object, name) { return method }
            return .missingAttribute(object, name)
        }
    }

    /// `obj[key]`: jinja2 tries the item and then, for a string key, the attribute.
    func getItem(_ object: TemplateValue, _ key: TemplateValue) throws(ChatTemplateError) -> TemplateValue {
        switch object {
        case .undefined(let m):
            throw .render(m)
        case .dict(let d):
            if let v = d[key] { return v }
        case .namespace(let ns):
            if let v = ns.attributes[key] { return v }
        case .list(let items), .tuple(let items):
            if case .int(var i) = key.numeric {
                if i < 0 { i += items.count }
                if i >= 0 && i < items.count { return items[i] }
            }
        case .string(let s):
            if case .int(var i) = key.numeric {
                let chars = Array(s)
                if i < 0 { i += chars.count }
                if i >= 0 && i < chars.count { return .string(String(chars[i])) }
            }
        default:
            break
        }
        if case .string(let name) = key { return try getAttribute(object, name) }
        return .undefined(message: "\(object.objectTypeName) has no element \(pythonRepr(key))")
    }

    func slice(_ object: TemplateValue, _ start: TemplateValue?, _ stop: TemplateValue?, _ step: TemplateValue?) throws(ChatTemplateError) -> TemplateValue {
        func bound(_ v: TemplateValue?) throws(ChatTemplateError) -> Int? {
            guard let v, !(v.isNull) else { return nil }
            if case .undefined(let m) = v { throw .render(m) }
            guard case .int(let i) = v.numeric else {
                throw .render("slice indices must be integers or None or have an __index__ method")
            }
            return i
        }
        let step = try bound(step) ?? 1
        guard step != 0 else { throw .render("slice step cannot be zero") }
        guard step.magnitude < UInt(Int.max / 2) else { throw .render("slice step is too large") }
        func indices(_ count: Int) throws(ChatTemplateError) -> [Int] {
            // Python's slice.indices.
            func clamp(_ v: Int?, _ defaultValue: Int) -> Int {
                guard var v else { return defaultValue }
                if v < 0 { v += count }
                if step > 0 { return min(max(v, 0), count) }
                return min(max(v, -1), count - 1)
            }
            let lo = clamp(try bound(start), step > 0 ? 0 : count - 1)
            let hi = clamp(try bound(stop), step > 0 ? count : -1)
            var result: [Int] = []
            var i = lo
            while step > 0 ? i < hi : i > hi {
                result.append(i)
                i += step
            }
            return result
        }
        switch object {
        case .list(let items): return .list(try indices(items.count).map { items[$0] })
        case .tuple(let items): return .tuple(try indices(items.count).map { items[$0] })
        case .string(let s):
            let chars = Array(s)
            return .string(String(try indices(chars.count).map { chars[$0] }))
        case .undefined(let m): throw .render(m)
        // Slices bypass jinja2's getitem, so Python's TypeError comes through.
        default: throw .render("'\(object.pythonTypeName)' object is not subscriptable")
        }
    }

    func binaryOperation(_ op: String, _ a: TemplateValue, _ b: TemplateValue) throws(ChatTemplateError) -> TemplateValue {
        if op == "~" { return .string(pythonStr(a) + pythonStr(b)) }
        if case .undefined(let m) = a { throw .render(m) }
        if case .undefined(let m) = b { throw .render(m) }
        let unsupported = ChatTemplateError.render("unsupported operand type(s) for \(op): '\(a.pythonTypeName)' and '\(b.pythonTypeName)'")
        if let x = a.numeric, let y = b.numeric {
            guard let r = try arithmetic(op, x, y) else { throw unsupported }
            return r
        }
        switch (op, a, b) {
        case let ("+", .string(x), .string(y)): return .string(x + y)
        case let ("+", .list(x), .list(y)): return .list(x + y)
        case let ("+", .tuple(x), .tuple(y)): return .tuple(x + y)
        case ("+", .string, _), ("+", .list, _), ("+", .tuple, _):
            throw .render("can only concatenate \(a.pythonTypeName) (not \"\(b.pythonTypeName)\") to \(a.pythonTypeName)")
        case ("*", .string, _), ("*", .list, _), ("*", .tuple, _):
            guard case .int(let n) = b.numeric else { throw .render("can't multiply sequence by non-int of type '\(b.pythonTypeName)'") }
            return try repeatSequence(a, n)
        case ("*", _, .string), ("*", _, .list), ("*", _, .tuple):
            guard case .int(let n) = a.numeric else { throw .render("can't multiply sequence by non-int of type '\(a.pythonTypeName)'") }
            return try repeatSequence(b, n)
        case let ("%", .string(format), _):
            return .string(try percentFormat(format, b))
        default:
            throw unsupported
        }
    }

    private func repeatSequence(_ v: TemplateValue, _ n: Int) throws(ChatTemplateError) -> TemplateValue {
        let n = max(0, n)
        let length: Int
        switch v {
        case .string(let s): length = s.utf8.count
        case .list(let a), .tuple(let a): length = a.count
        default: length = 0
        }
        let (total, overflow) = length.multipliedReportingOverflow(by: n)
        guard !overflow, total <= Self.maxRepeatedLength else { throw .render("repeated sequence is too large") }
        switch v {
        case .string(let s): return .string(String(repeating: s, count: n))
        case .list(let a): return .list(Array([[TemplateValue]](repeating: a, count: n).joined()))
        case .tuple(let a): return .tuple(Array([[TemplateValue]](repeating: a, count: n).joined()))
        default: return v
        }
    }

    /// `"%s ... %d" % args`, for the `%s`/`%d`/`%r` conversions templates use.
    private func percentFormat(_ format: String, _ args: TemplateValue) throws(ChatTemplateError) -> String {
        var values: [TemplateValue]
        if case .tuple(let t) = args { values = t } else { values = [args] }
        var out = ""
        var chars = format.makeIterator()
        while let c = chars.next() {
            guard c == "%" else { out.append(c); continue }
            guard let k = chars.next() else { throw .render("incomplete format") }
            if k == "%" { out.append("%"); continue }
            guard !values.isEmpty else { throw .render("not enough arguments for format string") }
            let v = values.removeFirst()
            switch k {
            case "s": out += pythonStr(v)
            case "r": out += pythonRepr(v)
            case "d", "i":
                guard let n = v.numeric else { throw .render("%\(k) format: a real number is required, not \(v.pythonTypeName)") }
                switch n {
                case .int(let i): out += String(i)
                case .double(let d):
                    guard let i = Int(exactly: d.rounded(.towardZero)) else { throw .render("%\(k) format: \(pythonFloatRepr(d)) is out of range") }
                    out += String(i)
                }
            default: throw .render("unsupported format character '\(k)'")
            }
        }
        if !values.isEmpty { throw .render("not all arguments converted during string formatting") }
        return out
    }

    private func arithmetic(_ op: String, _ x: PythonNumber, _ y: PythonNumber) throws(ChatTemplateError) -> TemplateValue? {
        if case .int(let p) = x, case .int(let q) = y {
            switch op {
            case "+", "-", "*":
                let (r, overflow) = op == "+" ? p.addingReportingOverflow(q) : op == "-" ? p.subtractingReportingOverflow(q) : p.multipliedReportingOverflow(by: q)
                if overflow { throw .render("integer overflow") }
                return .int(r)
            case "/":
                guard q != 0 else { throw .render("division by zero") }
                return .double(Double(p) / Double(q))
            case "//", "%":
                guard q != 0 else { throw .render("integer division or modulo by zero") }
                var quotient = p / q
                var remainder = p % q
                if remainder != 0 && (remainder < 0) != (q < 0) {
                    quotient -= 1
                    remainder += q
                }
                return .int(op == "//" ? quotient : remainder)
            case "**":
                if q < 0 { return .double(pow(Double(p), Double(q))) }
                // Exponentiation by squaring, refusing what does not fit (Python would go to big ints).
                var (result, base, exponent) = (1, p, q)
                while exponent > 0 {
                    if exponent & 1 == 1 {
                        let (r, overflow) = result.multipliedReportingOverflow(by: base)
                        if overflow { throw .render("integer overflow") }
                        result = r
                    }
                    exponent >>= 1
                    if exponent > 0 {
                        let (b, overflow) = base.multipliedReportingOverflow(by: base)
                        if overflow { throw .render("integer overflow") }
                        base = b
                    }
                }
                return .int(result)
            default: return nil
            }
        }
        let p = x.asDouble
        let q = y.asDouble
        switch op {
        case "+": return .double(p + q)
        case "-": return .double(p - q)
        case "*": return .double(p * q)
        case "/":
            guard q != 0 else { throw .render("float division by zero") }
            return .double(p / q)
        case "//", "%":
            guard q != 0 else { throw .render(op == "//" ? "float floor division by zero" : "float modulo") }
            let quotient = (p / q).rounded(.down)
            if op == "//" { return .double(quotient) }
            var r = p.truncatingRemainder(dividingBy: q)
            if r != 0 && (r < 0) != (q < 0) { r += q }
            return .double(r)
        case "**": return .double(pow(p, q))
        default: return nil
        }
    }

    func compare(_ op: String, _ a: TemplateValue, _ b: TemplateValue) throws(ChatTemplateError) -> Bool {
        switch op {
        case "==": return pythonEquals(a, b)
        case "!=": return !pythonEquals(a, b)
        case "in", "notin":
            let found: Bool
            switch b {
            case .string(let s):
                guard case .string(let needle) = a else {
                    throw .render("'in <string>' requires string as left operand, not \(a.pythonTypeName)")
                }
                found = needle.isEmpty || s.contains(needle)
            case .list(let items), .tuple(let items): found = items.contains { pythonEquals($0, a) }
            case .dict(let d):
                switch a {
                case .list, .dict, .namespace: throw .render("unhashable type: '\(a.pythonTypeName)'")
                default: found = d[a] != nil
                }
            case .undefined: found = false
            default: throw .render("argument of type '\(b.pythonTypeName)' is not iterable")
            }
            return op == "in" ? found : !found
        default:
            if case .undefined(let m) = a { throw .render(m) }
            if case .undefined(let m) = b { throw .render(m) }
            guard let order = try pythonOrder(a, b) else {
                throw .render("'\(op)' not supported between instances of '\(a.pythonTypeName)' and '\(b.pythonTypeName)'")
            }
            switch op {
            case "<": return order < 0
            case "<=": return order <= 0
            case ">": return order > 0
            default: return order >= 0
            }
        }
    }
}

/// Python's ordering of two values (-1, 0, 1), or nil where Python raises `TypeError`.
func pythonOrder(_ a: TemplateValue, _ b: TemplateValue) throws(ChatTemplateError) -> Int? {
    if let x = a.numeric, let y = b.numeric {
        if case .int(let p) = x, case .int(let q) = y { return p < q ? -1 : p > q ? 1 : 0 }
        let p = x.asDouble, q = y.asDouble
        return p < q ? -1 : p > q ? 1 : 0
    }
    switch (a, b) {
    case let (.string(x), .string(y)):
        // Python compares strings by code point.
        if x == y { return 0 }
        return x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : 1
    case let (.list(x), .list(y)), let (.tuple(x), .tuple(y)):
        for (p, q) in zip(x, y) where !pythonEquals(p, q) {
            guard let o = try pythonOrder(p, q) else { return nil }
            return o
        }
        return x.count < y.count ? -1 : x.count > y.count ? 1 : 0
    default:
        return nil
    }
}

extension TemplateValue {
    var isNull: Bool {
        if case .none = self { return true }
        return false
    }
}

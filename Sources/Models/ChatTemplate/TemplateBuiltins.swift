import Foundation

/// jinja2's built-in filters and tests, the globals transformers adds, and the Python methods
/// templates call on strings, dicts and lists (only the non-mutating ones: transformers renders in
/// an `ImmutableSandboxedEnvironment`).
enum TemplateBuiltins {
    // MARK: Globals

    static func globals(now: @escaping @Sendable () -> Date) -> [String: TemplateValue] {
        var g: [String: TemplateValue] = [:]
        g["raise_exception"] = .function(TemplateFunction(name: "raise_exception") { args, _ throws(ChatTemplateError) in
            throw .raised(args.first.map(pythonStr) ?? "")
        })
        g["strftime_now"] = .function(TemplateFunction(name: "strftime_now") { args, _ throws(ChatTemplateError) in
            guard case .string(let format)? = args.first else { throw .render("strftime_now() argument must be str") }
            return .string(strftime(format, now()))
        })
        g["range"] = .function(TemplateFunction(name: "range") { args, _ throws(ChatTemplateError) in
            var ints: [Int] = []
            for a in args {
                guard case .int(let i) = a.numeric, !(a.isBool) else {
                    throw .render("'\(a.pythonTypeName)' object cannot be interpreted as an integer")
                }
                ints.append(i)
            }
            let (start, stop, step): (Int, Int, Int)
            switch ints.count {
            case 1: (start, stop, step) = (0, ints[0], 1)
            case 2: (start, stop, step) = (ints[0], ints[1], 1)
            case 3: (start, stop, step) = (ints[0], ints[1], ints[2])
            default: throw .render("range expected 1 to 3 arguments, got \(ints.count)")
            }
            guard step != 0 else { throw .render("range() arg 3 must not be zero") }
            let values = Array(stride(from: start, to: stop, by: step))
            guard values.count <= 100_000 else {
                throw .render("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).")
            }
            return .list(values.map { .int($0) })
        })
        g["namespace"] = .function(TemplateFunction(name: "namespace") { args, kwargs throws(ChatTemplateError) in
            let ns = TemplateNamespace()
            for a in args {
                guard case .dict(let d) = a else { throw .render("namespace() takes a mapping") }
                for e in d.entries { ns.attributes[e.key] = e.value }
            }
            for (k, v) in kwargs { ns.attributes[k] = v }
            return .namespace(ns)
        })
        g["dict"] = .function(TemplateFunction(name: "dict") { args, kwargs throws(ChatTemplateError) in
            var d = TemplateDict()
            for a in args {
                guard case .dict(let other) = a else { throw .render("dict() takes a mapping") }
                for e in other.entries { d[e.key] = e.value }
            }
            for (k, v) in kwargs { d[k] = v }
            return .dict(d)
        })
        return g
    }

    private static func strftime(_ format: String, _ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970)
        var parts = tm()
        localtime_r(&t, &parts)
        var buffer = [Int8](repeating: 0, count: 512)
        let n = Foundation.strftime(&buffer, buffer.count, format, &parts)
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: Arguments

    /// Positional-or-keyword argument binding for builtins: `spec` lists the parameter names after the
    /// value itself.
    struct Arguments {
        var values: [String: TemplateValue] = [:]
        init(_ name: String, _ spec: [String], _ args: [TemplateValue], _ kwargs: [(String, TemplateValue)]) throws(ChatTemplateError) {
            guard args.count <= spec.count else {
                throw .render("\(name)() takes at most \(spec.count) argument(s) (\(args.count) given)")
            }
            for (i, a) in args.enumerated() { values[spec[i]] = a }
            for (k, v) in kwargs {
                guard spec.contains(k) else { throw .render("\(name)() got an unexpected keyword argument '\(k)'") }
                values[k] = v
            }
        }
        /// The argument, nil when absent, undefined or None (Python's "use the default").
        subscript(_ key: String) -> TemplateValue? {
            guard let v = values[key], !v.isUndefined, !v.isNull else { return nil }
            return v
        }
        func int(_ key: String, _ defaultValue: Int) throws(ChatTemplateError) -> Int {
            guard let v = self[key] else { return defaultValue }
            guard case .int(let i) = v.numeric else { throw .render("'\(key)' must be an integer, not \(v.pythonTypeName)") }
            return i
        }
        func bool(_ key: String, _ defaultValue: Bool) -> Bool { self[key]?.truthy ?? defaultValue }
        func string(_ key: String) -> String? { self[key].map(pythonStr) }
    }

    // MARK: Filters

    /// The filters `filter` implements; jinja2 refuses any other name when it compiles the template.
    static let filterNames: Set<String> = [
        "trim", "tojson", "length", "count", "upper", "lower", "capitalize", "title", "first", "last", "join",
        "default", "d", "items", "list", "string", "safe", "int", "float", "abs", "round", "replace", "reverse",
        "unique", "sort", "indent", "selectattr", "rejectattr", "select", "reject", "map", "sum", "min", "max",
        "dictsort", "wordcount", "center", "format", "batch", "escape", "e", "attr",
    ]

    static func filter(
        _ name: String, _ value: TemplateValue, _ args: [TemplateValue], _ kwargs: [(String, TemplateValue)],
        interpreter: TemplateInterpreter
    ) throws(ChatTemplateError) -> TemplateValue {
        func bind(_ spec: [String]) throws(ChatTemplateError) -> Arguments { try Arguments(name, spec, args, kwargs) }
        switch name {
        case "trim":
            let a = try bind(["chars"])
            return .string(strip(pythonStr(value), a.string("chars"), leading: true, trailing: true))
        case "tojson":
            let a = try bind(["ensure_ascii", "indent", "separators", "sort_keys"])
            var indent: String? = nil
            if let i = a["indent"], !i.isNull {
                if case .string(let s) = i {
                    indent = s
                } else {
                    let width = try a.int("indent", 0)
                    guard width <= 4096 else { throw .render("tojson indent is too large") }
                    indent = String(repeating: " ", count: max(0, width))
                }
            }
            var separators: (String, String)? = nil
            if let s = a["separators"], !s.isNull {
                let parts = try s.iterate()
                guard parts.count == 2 else { throw .render("separators must be a pair of strings") }
                separators = (pythonStr(parts[0]), pythonStr(parts[1]))
            }
            return .string(try pythonJSONDumps(value, indent: indent, separators: separators, sortKeys: a.bool("sort_keys", false),
                                               ensureASCII: a.bool("ensure_ascii", false)))
        case "length", "count":
            return .int(try length(value))
        case "upper": return .string(pythonStr(value).uppercased())
        case "lower": return .string(pythonStr(value).lowercased())
        case "capitalize": return .string(capitalize(pythonStr(value)))
        case "title":
            // jinja2's do_title: capitalise each word, words split after '-', whitespace and opening brackets.
            var out = ""
            var atWordStart = true
            for c in pythonStr(value) {
                out += atWordStart ? c.uppercased() : c.lowercased()
                atWordStart = c.isWhitespace || "-([{<".contains(c)
            }
            return .string(out)
        case "first":
            let items = try value.iterate()
            return items.first ?? .undefined(message: "No first item, sequence was empty.")
        case "last":
            let items = try value.iterate()
            return items.last ?? .undefined(message: "No last item, sequence was empty.")
        case "join":
            let a = try bind(["d", "attribute"])
            var items = try value.iterate()
            if let attribute = a["attribute"] { items = try items.map { v throws(ChatTemplateError) in try attributePath(v, attribute, interpreter) } }
            return .string(items.map(pythonStr).joined(separator: a.string("d") ?? ""))
        case "default", "d":
            let a = try bind(["default_value", "boolean"])
            let useDefault = value.isUndefined || (a.bool("boolean", false) && !value.truthy)
            return useDefault ? (a.values["default_value"] ?? .string("")) : value
        case "items":
            switch value {
            case .undefined: return .list([])
            case .dict(let d): return .list(d.entries.map { .tuple([$0.key, $0.value]) })
            default: throw .render("Can only get item pairs from a mapping.")
            }
        case "list":
            return .list(try value.iterate())
        case "string":
            return .string(pythonStr(value))
        case "safe":
            return value
        case "escape", "e":
            // Autoescaping is off for chat templates; the filter itself still escapes HTML.
            var out = ""
            for c in pythonStr(value) {
                switch c {
                case "&": out += "&amp;"
                case "<": out += "&lt;"
                case ">": out += "&gt;"
                case "\"": out += "&#34;"
                case "'": out += "&#39;"
                default: out.append(c)
                }
            }
            return .string(out)
        case "attr":
            // The Python attribute only (a method), never a dict item.
            let a = try bind(["name"])
            let attribute = a.string("name") ?? ""
            if case .namespace(let ns) = value { return ns.attributes[attribute] ?? .missingAttribute(value, attribute) }
            if case .undefined(let m) = value { throw .render(m) }
            return try method(value, attribute) ?? .missingAttribute(value, attribute)
        case "int":
            // int(Undefined) raises, it does not fall back to the default.
            if case .undefined(let m) = value { throw .render(m) }
            let a = try bind(["default", "base"])
            let base = try a.int("base", 10)
            guard (2...36).contains(base) else { throw .render("int() base must be >= 2 and <= 36") }
            return toInt(value, base: base) ?? (a.values["default"] ?? .int(0))
        case "float":
            if case .undefined(let m) = value { throw .render(m) }
            let a = try bind(["default"])
            return toFloat(value) ?? (a.values["default"] ?? .double(0))
        case "abs":
            switch value {
            case .int(let i):
                guard i != .min else { throw .render("integer overflow") }
                return .int(abs(i))
            case .double(let d): return .double(abs(d))
            case .bool(let b): return .int(b ? 1 : 0)
            default: throw .render("bad operand type for abs(): '\(value.pythonTypeName)'")
            }
        case "round":
            let a = try bind(["precision", "method"])
            let precision = try a.int("precision", 0)
            guard let n = value.numeric else { throw .render("type \(value.pythonTypeName) doesn't define __round__ method") }
            let scale = pow(10.0, Double(precision))
            let method = a.string("method") ?? "common"
            // Python's round() of an int (or bool) is an int.
            if method == "common", case .int(let i) = n, precision >= 0 { return .int(i) }
            let x = n.asDouble * scale
            let r: Double = switch method {
            case "ceil": x.rounded(.up)
            case "floor": x.rounded(.down)
            // Python's round(): halves go to the even neighbour.
            case "common": x.rounded(.toNearestOrEven)
            default: throw .render("method must be common, ceil or floor")
            }
            return .double(r / scale)
        case "replace":
            let a = try bind(["old", "new", "count"])
            guard let old = a.string("old"), let new = a.string("new") else { throw .render("replace() needs old and new") }
            let count = try a.int("count", -1)
            return .string(replace(pythonStr(value), old, new, count: count))
        case "reverse":
            if case .string(let s) = value { return .string(String(s.reversed())) }
            return .list(try value.iterate().reversed())
        case "unique":
            let a = try bind(["case_sensitive", "attribute"])
            let caseSensitive = a.bool("case_sensitive", false)
            var seen: [TemplateValue] = []
            var out: [TemplateValue] = []
            for item in try value.iterate() {
                var key = item
                if let attribute = a["attribute"] { key = try attributePath(item, attribute, interpreter) }
                if !caseSensitive, case .string(let s) = key { key = .string(s.lowercased()) }
                if !seen.contains(where: { pythonEquals($0, key) }) {
                    seen.append(key)
                    out.append(item)
                }
            }
            return .list(out)
        case "sort":
            let a = try bind(["reverse", "case_sensitive", "attribute"])
            let caseSensitive = a.bool("case_sensitive", false)
            var keyed: [(key: TemplateValue, value: TemplateValue)] = []
            for item in try value.iterate() {
                var key = item
                if let attribute = a["attribute"] { key = try attributePath(item, attribute, interpreter) }
                if !caseSensitive, case .string(let s) = key { key = .string(s.lowercased()) }
                keyed.append((key, item))
            }
            var failure: ChatTemplateError? = nil
            // A stable insertion sort keeps equal keys in order, as Python's sort does.
            var sorted: [(key: TemplateValue, value: TemplateValue)] = []
            for entry in keyed {
                var i = sorted.count
                while i > 0 {
                    do {
                        guard let o = try pythonOrder(entry.key, sorted[i - 1].key) else {
                            failure = .render("'<' not supported between instances of '\(entry.key.pythonTypeName)' and '\(sorted[i - 1].key.pythonTypeName)'")
                            break
                        }
                        if o >= 0 { break }
                    } catch { failure = error; break }
                    i -= 1
                }
                if let failure { throw failure }
                sorted.insert(entry, at: i)
            }
            let values = sorted.map(\.value)
            return .list(a.bool("reverse", false) ? values.reversed() : values)
        case "indent":
            let a = try bind(["width", "first", "blank"])
            let indentation: String
            if case .string(let s)? = a["width"] {
                indentation = s
            } else {
                let width = try a.int("width", 4)
                guard width <= 4096 else { throw .render("indent width is too large") }
                indentation = String(repeating: " ", count: max(0, width))
            }
            // `s += "\n"` in jinja2: only strings.
            guard case .string(let string) = value else {
                if case .undefined(let m) = value { throw .render(m) }
                throw .render("unsupported operand type(s) for +=: '\(value.pythonTypeName)' and 'str'")
            }
            let text = string + "\n"
            var lines = splitLines(text)
            var result: String
            if a.bool("blank", false) {
                result = lines.joined(separator: "\n" + indentation)
            } else {
                result = lines.removeFirst()
                if !lines.isEmpty {
                    result += "\n" + lines.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n")
                }
            }
            if a.bool("first", false) { result = indentation + result }
            return .string(result)
        case "selectattr", "rejectattr", "select", "reject":
            // jinja2 iterates only a truthy value (`if value: for item in value`).
            let items = value.truthy ? try value.iterate() : []
            let byAttribute = name.hasSuffix("attr")
            guard !byAttribute || !args.isEmpty else { throw .render("\(name)() needs an attribute name") }
            let testName = byAttribute ? (args.count > 1 ? pythonStr(args[1]) : nil) : (args.first.map(pythonStr))
            let testArgs = Array(args.dropFirst(byAttribute ? 2 : 1))
            let keep = name.hasPrefix("select")
            var out: [TemplateValue] = []
            for item in items {
                let subject = byAttribute ? try attributePath(item, args[0], interpreter) : item
                let passed = try testName.map { t throws(ChatTemplateError) in try test(t, subject, testArgs) } ?? subject.truthy
                if passed == keep { out.append(item) }
            }
            return .list(out)
        case "map":
            let items = value.truthy ? try value.iterate() : []
            if let attribute = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                let fallback = kwargs.first(where: { $0.0 == "default" })?.1
                return .list(try items.map { item throws(ChatTemplateError) in
                    let v = try attributePath(item, attribute, interpreter)
                    if v.isUndefined, let fallback { return fallback }
                    return v
                })
            }
            guard let filterName = args.first else { throw .render("map() needs a filter name or attribute=") }
            let rest = Array(args.dropFirst())
            return .list(try items.map { item throws(ChatTemplateError) in
                try filter(pythonStr(filterName), item, rest, kwargs, interpreter: interpreter)
            })
        case "sum":
            let a = try bind(["attribute", "start"])
            var total: TemplateValue = a["start"] ?? .int(0)
            for item in try value.iterate() {
                let v = try a["attribute"].map { at throws(ChatTemplateError) in try attributePath(item, at, interpreter) } ?? item
                total = try interpreter.binaryOperation("+", total, v)
            }
            return total
        case "min", "max":
            let items = try value.iterate()
            guard var best = items.first else { return .undefined(message: "No aggregated item, sequence was empty.") }
            for item in items.dropFirst() {
                guard let o = try pythonOrder(item, best) else { throw .render("'<' not supported between instances of '\(item.pythonTypeName)' and '\(best.pythonTypeName)'") }
                if name == "min" ? o < 0 : o > 0 { best = item }
            }
            return best
        case "dictsort":
            guard case .dict(let d) = value else { throw .render("dictsort requires a mapping") }
            // Case-insensitive by key, as jinja2's default.
            func key(_ v: TemplateValue) -> TemplateValue {
                if case .string(let s) = v { return .string(s.lowercased()) }
                return v
            }
            let sorted = d.entries.sorted { (((try? pythonOrder(key($0.key), key($1.key))) ?? nil) ?? 0) < 0 }
            return .list(sorted.map { .tuple([$0.key, $0.value]) })
        case "wordcount":
            return .int(pythonStr(value).split(whereSeparator: { $0.isWhitespace }).count)
        case "center":
            let a = try bind(["width"])
            let s = pythonStr(value)
            let width = try a.int("width", 80)
            guard width <= TemplateInterpreter.maxRepeatedLength else { throw .render("center width is too large") }
            let pad = max(0, width - s.count)
            let left = pad / 2 + (pad & width & 1)
            return .string(String(repeating: " ", count: left) + s + String(repeating: " ", count: pad - left))
        case "format":
            return try interpreter.binaryOperation("%", value, args.count == 1 ? args[0] : .tuple(args))
        case "batch":
            let a = try bind(["linecount", "fill_with"])
            let size = try a.int("linecount", 1)
            guard size > 0 else { throw .render("batch size must be positive") }
            let items = try value.iterate()
            var out: [TemplateValue] = []
            var i = 0
            while i < items.count {
                var chunk = Array(items[i..<min(i + size, items.count)])
                if let fill = a["fill_with"] { while chunk.count < size { chunk.append(fill) } }
                out.append(.list(chunk))
                i += size
            }
            return .list(out)
        default:
            throw .render("No filter named '\(name)'.")
        }
    }

    /// `attribute="a.b"` or an integer index, as jinja2's `make_attrgetter`.
    private static func attributePath(_ item: TemplateValue, _ attribute: TemplateValue, _ interpreter: TemplateInterpreter) throws(ChatTemplateError) -> TemplateValue {
        if case .int = attribute { return try interpreter.getItem(item, attribute) }
        var v = item
        for part in pythonStr(attribute).split(separator: ".") {
            if let i = Int(part) { v = try interpreter.getItem(v, .int(i)) } else { v = try interpreter.getItem(v, .string(String(part))) }
        }
        return v
    }

    static func length(_ value: TemplateValue) throws(ChatTemplateError) -> Int {
        switch value {
        case .undefined: 0
        case .string(let s): s.count
        case .list(let a), .tuple(let a): a.count
        case .dict(let d): d.count
        default: throw .render("object of type '\(value.pythonTypeName)' has no len()")
        }
    }

    private static func toInt(_ value: TemplateValue, base: Int) -> TemplateValue? {
        switch value {
        case .int(let i): return .int(i)
        case .bool(let b): return .int(b ? 1 : 0)
        case .double(let d): return Int(exactly: d.rounded(.towardZero)).map { .int($0) }
        case .string(let s):
            let t = s.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: "")
            if let i = Int(t, radix: base) { return .int(i) }
            if let d = Double(t), let i = Int(exactly: d.rounded(.towardZero)) { return .int(i) }
            return nil
        default: return nil
        }
    }

    private static func toFloat(_ value: TemplateValue) -> TemplateValue? {
        switch value {
        case .int(let i): return .double(Double(i))
        case .bool(let b): return .double(b ? 1 : 0)
        case .double: return value
        case .string(let s): return Double(s.trimmingCharacters(in: .whitespaces)).map { .double($0) }
        default: return nil
        }
    }

    // MARK: Tests

    static func test(_ name: String, _ value: TemplateValue, _ args: [TemplateValue]) throws(ChatTemplateError) -> Bool {
        func arg() throws(ChatTemplateError) -> TemplateValue {
            guard let a = args.first else { throw .render("test '\(name)' needs an argument") }
            return a
        }
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": return value.isNull
        case "string": if case .string = value { return true } else { return false }
        case "mapping": if case .dict = value { return true } else { return false }
        case "iterable", "sequence":
            switch value {
            case .undefined, .string, .list, .tuple, .dict: return true
            default: return false
            }
        case "number":
            switch value {
            case .int, .double, .bool: return true
            default: return false
            }
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .double = value { return true } else { return false }
        case "boolean": return value.isBool
        case "true": if case .bool(true) = value { return true } else { return false }
        case "false": if case .bool(false) = value { return true } else { return false }
        case "callable": if case .function = value { return true } else { return false }
        case "equalto", "eq", "==": return pythonEquals(value, try arg())
        case "ne", "!=": return !pythonEquals(value, try arg())
        case "sameas":
            let other = try arg()
            switch (value, other) {
            case (.none, .none): return true
            case let (.bool(x), .bool(y)): return x == y
            case let (.namespace(x), .namespace(y)): return x === y
            default: return false
            }
        case "lt", "<", "lessthan", "le", "<=", "gt", ">", "greaterthan", "ge", ">=":
            let op = ["lt": "<", "lessthan": "<", "le": "<=", "gt": ">", "greaterthan": ">", "ge": ">="][name] ?? name
            guard let o = try pythonOrder(value, try arg()) else {
                throw .render("'\(op)' not supported between instances of '\(value.pythonTypeName)' and '\(try arg().pythonTypeName)'")
            }
            switch op {
            case "<": return o < 0
            case "<=": return o <= 0
            case ">": return o > 0
            default: return o >= 0
            }
        case "in":
            let container = try arg()
            switch container {
            case .string(let s): if case .string(let n) = value { return n.isEmpty || s.contains(n) } else { return false }
            case .list(let a), .tuple(let a): return a.contains { pythonEquals($0, value) }
            case .dict(let d): return d[value] != nil
            default: return false
            }
        case "odd", "even", "divisibleby":
            // `value % 2 == 1`, `value % 2 == 0`, `value % num == 0` with Python's modulo.
            guard let x = value.numeric else {
                if case .undefined(let m) = value { throw .render(m) }
                throw .render("unsupported operand type(s) for %: '\(value.pythonTypeName)' and 'int'")
            }
            var divisor = PythonNumber.int(2)
            if name == "divisibleby" {
                let d = try arg()
                guard let n = d.numeric else { throw .render("unsupported operand type(s) for %: '\(value.pythonTypeName)' and '\(d.pythonTypeName)'") }
                divisor = n
            }
            let remainder: Double
            switch (x, divisor) {
            case let (.int(p), .int(q)):
                guard q != 0 else { throw .render("integer division or modulo by zero") }
                remainder = Double(((p % q) + q) % q)
            default:
                let (p, q) = (x.asDouble, divisor.asDouble)
                guard q != 0 else { throw .render("float modulo") }
                var r = p.truncatingRemainder(dividingBy: q)
                if r != 0 && (r < 0) != (q < 0) { r += q }
                remainder = r
            }
            return name == "odd" ? remainder == 1 : remainder == 0
        case "lower": return pythonStr(value) == pythonStr(value).lowercased()
        case "upper": return pythonStr(value) == pythonStr(value).uppercased()
        default:
            throw .render("No test named '\(name)' found.")
        }
    }

    // MARK: Methods

    private static let unsafeMethods: [String: Set<String>] = [
        "list": ["append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"],
        "dict": ["update", "pop", "popitem", "setdefault", "clear"],
    ]

    /// A bound method such as `"x".strip`, nil if the value has no such method.
    static func method(_ object: TemplateValue, _ name: String) throws(ChatTemplateError) -> TemplateValue? {
        if let unsafe = unsafeMethods[object.pythonTypeName], unsafe.contains(name) {
            throw .render("access to attribute '\(name)' of '\(object.pythonTypeName)' object is unsafe.")
        }
        let body: ((_ args: [TemplateValue], _ kwargs: [(String, TemplateValue)]) throws(ChatTemplateError) -> TemplateValue)?
        switch object {
        case .string(let s): body = stringMethod(s, name)
        case .dict(let d): body = dictMethod(d, name)
        case .list(let a), .tuple(let a):
            switch name {
            case "index":
                body = { args, _ throws(ChatTemplateError) in
                    guard let x = args.first, let i = a.firstIndex(where: { pythonEquals($0, x) }) else { throw .render("value is not in list") }
                    return .int(i)
                }
            case "count":
                body = { args, _ throws(ChatTemplateError) in .int(a.filter { pythonEquals($0, args.first ?? .none) }.count) }
            default: body = nil
            }
        default: body = nil
        }
        return body.map { .function(TemplateFunction(name: name, call: $0)) }
    }

    private static func dictMethod(_ d: TemplateDict, _ name: String) -> ((_ args: [TemplateValue], _ kwargs: [(String, TemplateValue)]) throws(ChatTemplateError) -> TemplateValue)? {
        switch name {
        case "items": return { _, _ in .list(d.entries.map { .tuple([$0.key, $0.value]) }) }
        case "keys": return { _, _ in .list(d.entries.map(\.key)) }
        case "values": return { _, _ in .list(d.entries.map(\.value)) }
        case "get":
            return { args, _ throws(ChatTemplateError) in
                guard let key = args.first else { throw .render("get expected at least 1 argument, got 0") }
                return d[key] ?? (args.count > 1 ? args[1] : .none)
            }
        case "copy": return { _, _ in .dict(d) }
        default: return nil
        }
    }

    private static func stringMethod(_ s: String, _ name: String) -> ((_ args: [TemplateValue], _ kwargs: [(String, TemplateValue)]) throws(ChatTemplateError) -> TemplateValue)? {
        func chars(_ args: [TemplateValue]) -> String? {
            guard let a = args.first, !a.isNull else { return nil }
            return pythonStr(a)
        }
        switch name {
        case "strip": return { args, _ in .string(strip(s, chars(args), leading: true, trailing: true)) }
        case "lstrip": return { args, _ in .string(strip(s, chars(args), leading: true, trailing: false)) }
        case "rstrip": return { args, _ in .string(strip(s, chars(args), leading: false, trailing: true)) }
        case "upper": return { _, _ in .string(s.uppercased()) }
        case "lower": return { _, _ in .string(s.lowercased()) }
        case "capitalize": return { _, _ in .string(capitalize(s)) }
        case "title":
            return { _, _ in
                var out = ""
                var previousCased = false
                for c in s {
                    let cased = c.isCased
                    out += cased ? (previousCased ? c.lowercased() : c.uppercased()) : String(c)
                    previousCased = cased
                }
                return .string(out)
            }
        case "split", "rsplit":
            return { args, kwargs throws(ChatTemplateError) in
                let a = try Arguments(name, ["sep", "maxsplit"], args, kwargs)
                let maxSplit = try a.int("maxsplit", -1)
                if let sep = a.string("sep") {
                    guard !sep.isEmpty else { throw .render("empty separator") }
                    var parts = s.components(separatedBy: sep)
                    if maxSplit >= 0 && parts.count > maxSplit + 1 {
                        if name == "split" {
                            parts = Array(parts[..<maxSplit]) + [parts[maxSplit...].joined(separator: sep)]
                        } else {
                            let cut = parts.count - maxSplit
                            parts = [parts[..<cut].joined(separator: sep)] + Array(parts[cut...])
                        }
                    }
                    return .list(parts.map { .string($0) })
                }
                let words = s.split(whereSeparator: { $0.isWhitespace })
                guard maxSplit >= 0 && words.count > maxSplit else { return .list(words.map { .string(String($0)) }) }
                // Python keeps the unsplit remainder whole, with the whitespace on its far side.
                if name == "split" {
                    let rest = s[words[maxSplit].startIndex...]
                    return .list(words[..<maxSplit].map { .string(String($0)) } + [.string(String(rest))])
                }
                let cut = words.count - maxSplit
                let rest = s[..<words[cut - 1].endIndex]
                return .list([.string(String(rest))] + words[cut...].map { .string(String($0)) })
            }
        case "splitlines": return { _, _ in .list(splitLines(s).map { .string($0) }) }
        case "startswith", "endswith":
            return { args, _ throws(ChatTemplateError) in
                guard let a = args.first else { throw .render("\(name)() takes at least 1 argument (0 given)") }
                let candidates: [TemplateValue]
                if case .tuple(let t) = a { candidates = t } else { candidates = [a] }
                for c in candidates {
                    guard case .string(let x) = c else {
                        throw .render("\(name) first arg must be str or a tuple of str, not \(c.pythonTypeName)")
                    }
                    if name == "startswith" ? s.unicodeScalars.starts(with: x.unicodeScalars) : s.unicodeScalars.reversed().starts(with: x.unicodeScalars.reversed()) {
                        return .bool(true)
                    }
                }
                return .bool(false)
            }
        case "replace":
            return { args, _ throws(ChatTemplateError) in
                guard args.count >= 2 else { throw .render("replace expected at least 2 arguments, got \(args.count)") }
                let count: Int
                if args.count > 2, case .int(let c) = args[2].numeric { count = c } else { count = -1 }
                return .string(replace(s, pythonStr(args[0]), pythonStr(args[1]), count: count))
            }
        case "find", "index", "rfind":
            return { args, _ throws(ChatTemplateError) in
                guard let needle = chars(args) else { throw .render("\(name)() takes at least 1 argument (0 given)") }
                let range = name == "rfind" ? s.range(of: needle, options: .backwards) : s.range(of: needle)
                guard let range else {
                    if name == "index" { throw .render("substring not found") }
                    return .int(-1)
                }
                return .int(s.distance(from: s.startIndex, to: range.lowerBound))
            }
        case "count":
            return { args, _ in
                guard let needle = chars(args), !needle.isEmpty else { return .int(s.count + 1) }
                return .int(s.components(separatedBy: needle).count - 1)
            }
        case "join":
            return { args, _ throws(ChatTemplateError) in
                let items = try (args.first ?? .list([])).iterate()
                var parts: [String] = []
                for item in items {
                    guard case .string(let p) = item else { throw .render("sequence item \(parts.count): expected str instance, \(item.pythonTypeName) found") }
                    parts.append(p)
                }
                return .string(parts.joined(separator: s))
            }
        case "removeprefix": return { args, _ in
            let p = chars(args) ?? ""
            return .string(s.hasPrefix(p) ? String(s.dropFirst(p.count)) : s)
        }
        case "removesuffix": return { args, _ in
            let p = chars(args) ?? ""
            return .string(s.hasSuffix(p) && !p.isEmpty ? String(s.dropLast(p.count)) : s)
        }
        case "isdigit": return { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isNumber }) }
        case "isalpha": return { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isLetter }) }
        case "isspace": return { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isWhitespace }) }
        case "islower": return { _, _ in .bool(s.contains { $0.isCased } && s == s.lowercased()) }
        case "isupper": return { _, _ in .bool(s.contains { $0.isCased } && s == s.uppercased()) }
        default: return nil
        }
    }

    // MARK: String helpers

    /// Python's `str.strip(chars)`: whitespace when `chars` is nil.
    static func strip(_ s: String, _ chars: String?, leading: Bool, trailing: Bool) -> String {
        let remove: (Character) -> Bool = chars.map { set in { set.contains($0) } } ?? { $0.isWhitespace }
        var sub = Substring(s)
        if leading { sub = sub.drop(while: remove) }
        if trailing { while let last = sub.last, remove(last) { sub.removeLast() } }
        return String(sub)
    }

    static func capitalize(_ s: String) -> String {
        guard let first = s.first else { return s }
        return first.uppercased() + s.dropFirst().lowercased()
    }

    static func replace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
        if count < 0 { return old.isEmpty ? insertEverywhere(s, new) : s.replacingOccurrences(of: old, with: new) }
        var out = ""
        var rest = Substring(s)
        var n = 0
        while n < count, !old.isEmpty, let r = rest.range(of: old) {
            out += rest[..<r.lowerBound] + new
            rest = rest[r.upperBound...]
            n += 1
        }
        return out + rest
    }

    private static func insertEverywhere(_ s: String, _ new: String) -> String {
        new + s.map { String($0) + new }.joined()
    }

    /// Python's `str.splitlines()`: splits at line boundaries, dropping them; no empty last line.
    static func splitLines(_ s: String) -> [String] {
        var lines: [String] = []
        var current = ""
        for c in s {
            if c.isNewline {
                lines.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        if !current.isEmpty { lines.append(current) }
        return lines
    }
}

extension TemplateValue {
    var isBool: Bool {
        if case .bool = self { return true }
        return false
    }
}

/// A run-time value of the template language, with Python's semantics (jinja2 evaluates templates as
/// Python): truthiness, `str()`/`repr()` printing, `==` across int and float, ordered dicts.
///
/// Dicts keep insertion order (Python 3.7+), which `tojson` and `{{ dict }}` rely on; they are small
/// (a message, a tool schema), so lookups are linear.
enum TemplateValue {
    /// jinja2's default `Undefined`: prints empty, is falsy, iterates as empty; most operations on it
    /// (arithmetic, attribute access, subscripts) fail with `message`.
    case undefined(message: String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([TemplateValue])
    case tuple([TemplateValue])
    case dict(TemplateDict)
    /// The mutable object from `namespace(...)`, shared by reference like Python's.
    case namespace(TemplateNamespace)
    /// A callable: a macro, a global such as `range`, or a bound method such as `"x".strip`.
    case function(TemplateFunction)

    static func undefinedName(_ name: String) -> TemplateValue {
        .undefined(message: "\(pythonRepr(.string(name))) is undefined")
    }

    static func missingAttribute(_ owner: TemplateValue, _ name: String) -> TemplateValue {
        .undefined(message: "'\(owner.objectTypeName)' has no attribute \(pythonRepr(.string(name)))")
    }

    var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }

    /// Python's `bool(x)`.
    var truthy: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let b): b
        case .int(let i): i != 0
        case .double(let d): d != 0
        case .string(let s): !s.isEmpty
        case .list(let a), .tuple(let a): !a.isEmpty
        case .dict(let d): !d.isEmpty
        case .namespace, .function: true
        }
    }

    /// Python's type name, as used in `TypeError` messages.
    var pythonTypeName: String {
        switch self {
        case .undefined: "Undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .int: "int"
        case .double: "float"
        case .string: "str"
        case .list: "list"
        case .tuple: "tuple"
        case .dict: "dict"
        case .namespace: "Namespace"
        case .function: "function"
        }
    }

    /// jinja2's `object_type_repr`, used in "has no attribute" messages.
    var objectTypeName: String {
        switch self {
        case .none: "None"
        default: "\(pythonTypeName) object"
        }
    }

    /// The elements of an iterable (dicts iterate their keys, strings their characters).
    func iterate() throws(ChatTemplateError) -> [TemplateValue] {
        switch self {
        case .undefined: return []
        case .list(let a), .tuple(let a): return a
        case .dict(let d): return d.entries.map(\.key)
        case .string(let s): return s.map { .string(String($0)) }
        default: throw .render("'\(pythonTypeName)' object is not iterable")
        }
    }
}

/// An insertion-ordered dict keyed by template values (in practice strings, sometimes ints).
struct TemplateDict {
    var entries: [(key: TemplateValue, value: TemplateValue)] = []

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }

    subscript(key: TemplateValue) -> TemplateValue? {
        get { entries.first { pythonEquals($0.key, key) }?.value }
        set {
            if let i = entries.firstIndex(where: { pythonEquals($0.key, key) }) {
                if let newValue { entries[i].value = newValue } else { entries.remove(at: i) }
            } else if let newValue {
                entries.append((key, newValue))
            }
        }
    }

    subscript(name: String) -> TemplateValue? {
        get { self[.string(name)] }
        set { self[.string(name)] = newValue }
    }
}

/// The object `namespace(...)` returns: the only value a template may mutate (`set ns.x = ...`),
/// which is how templates carry state out of a loop's scope.
final class TemplateNamespace {
    var attributes = TemplateDict()
}

/// A callable value. Arguments arrive positional and keyword, as in a Python call.
struct TemplateFunction {
    var name: String
    var call: (_ args: [TemplateValue], _ kwargs: [(String, TemplateValue)]) throws(ChatTemplateError) -> TemplateValue
}

extension TemplateValue {
    /// Converts a parsed JSON document (a message, a tool) to a template value, keeping key order.
    init(json: JSONValue) {
        switch json {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(TemplateValue.init(json:)))
        case .object(let members):
            self = .dict(TemplateDict(entries: members.map { (.string($0.key), TemplateValue(json: $0.value)) }))
        }
    }
}

/// Python's `==`: numbers compare by value across int/float/bool, containers element-wise.
func pythonEquals(_ a: TemplateValue, _ b: TemplateValue) -> Bool {
    switch (a, b) {
    case (.undefined, .undefined), (.none, .none): return true
    case let (.string(x), .string(y)): return x == y
    case let (.list(x), .list(y)), let (.tuple(x), .tuple(y)):
        return x.count == y.count && zip(x, y).allSatisfy { pythonEquals($0, $1) }
    case let (.dict(x), .dict(y)):
        return x.count == y.count && x.entries.allSatisfy { e in y[e.key].map { pythonEquals($0, e.value) } ?? false }
    case let (.namespace(x), .namespace(y)): return x === y
    default:
        if let x = a.numeric, let y = b.numeric {
            switch (x, y) {
            case let (.int(p), .int(q)): return p == q
            default: return x.asDouble == y.asDouble
            }
        }
        return false
    }
}

/// A number for arithmetic: Python treats `True` as 1.
enum PythonNumber {
    case int(Int)
    case double(Double)
    var asDouble: Double {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        }
    }
}

extension TemplateValue {
    var numeric: PythonNumber? {
        switch self {
        case .int(let i): .int(i)
        case .double(let d): .double(d)
        case .bool(let b): .int(b ? 1 : 0)
        default: nil
        }
    }
}

/// Python's printing of values, which is what jinja2 writes for `{{ value }}`: `str()` for the value
/// itself, `repr()` for the elements of containers, and `json.dumps` for `tojson`.

/// Python's `str(value)`; jinja2's default `Undefined` prints as the empty string.
func pythonStr(_ value: TemplateValue) -> String {
    switch value {
    case .undefined: ""
    case .string(let s): s
    default: pythonRepr(value)
    }
}

/// Python's `repr(value)`.
func pythonRepr(_ value: TemplateValue) -> String {
    switch value {
    case .undefined: return "Undefined"
    case .none: return "None"
    case .bool(let b): return b ? "True" : "False"
    case .int(let i): return String(i)
    case .double(let d): return pythonFloatRepr(d)
    case .string(let s): return pythonStringRepr(s)
    case .list(let a): return "[" + a.map(pythonRepr).joined(separator: ", ") + "]"
    case .tuple(let a):
        return a.count == 1 ? "(" + pythonRepr(a[0]) + ",)" : "(" + a.map(pythonRepr).joined(separator: ", ") + ")"
    case .dict(let d):
        return "{" + d.entries.map { pythonRepr($0.key) + ": " + pythonRepr($0.value) }.joined(separator: ", ") + "}"
    case .namespace(let ns):
        return "<Namespace " + pythonRepr(.dict(ns.attributes)) + ">"
    case .function(let f): return "<function \(f.name)>"
    }
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote;
/// non-printable characters escaped.
func pythonStringRepr(_ s: String) -> String {
    let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
    var out = String(quote)
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if Character(scalar) == quote {
                out += "\\" + String(quote)
            } else if isPythonPrintable(scalar) {
                out.unicodeScalars.append(scalar)
            } else {
                let v = scalar.value
                if v < 0x100 { out += "\\x" + hex(v, 2) } else if v < 0x10000 { out += "\\u" + hex(v, 4) } else { out += "\\U" + hex(v, 8) }
            }
        }
    }
    out.append(quote)
    return out
}

private func hex(_ v: UInt32, _ width: Int) -> String {
    let h = String(v, radix: 16)
    return String(repeating: "0", count: max(0, width - h.count)) + h
}

/// `str.isprintable()` for one character: everything but control, format, surrogate, private-use,
/// unassigned and separator characters, except the ASCII space.
private func isPythonPrintable(_ scalar: Unicode.Scalar) -> Bool {
    if scalar == " " { return true }
    switch scalar.properties.generalCategory {
    case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator, .spaceSeparator:
        return false
    default:
        return true
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, fixed notation for decimal exponents
/// in [-4, 16), scientific (`1e+16`, `1e-05`) outside.
func pythonFloatRepr(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
    let (digits, pointPosition) = shortestDigits(abs(d))
    let sign = d < 0 ? "-" : ""
    let exponent = pointPosition - 1
    if exponent < -4 || exponent >= 16 {
        var mantissa = String(digits.first!)
        if digits.count > 1 { mantissa += "." + digits.dropFirst() }
        let e = abs(exponent)
        return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + (e < 10 ? "0" : "") + String(e)
    }
    if pointPosition <= 0 {
        return sign + "0." + String(repeating: "0", count: -pointPosition) + digits
    }
    if pointPosition >= digits.count {
        return sign + digits + String(repeating: "0", count: pointPosition - digits.count) + ".0"
    }
    let i = digits.index(digits.startIndex, offsetBy: pointPosition)
    return sign + digits[..<i] + "." + digits[i...]
}

/// The shortest round-trip decimal digits of a positive finite double (Swift's `description` computes
/// the same digits as Python's repr) and the position of the decimal point: value = 0.DIGITS × 10^pos.
private func shortestDigits(_ d: Double) -> (String, Int) {
    let text = d.description
    var mantissa = Substring(text)
    var exponent = 0
    if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        mantissa = text[..<e]
        exponent = Int(text[text.index(after: e)...]) ?? 0
    }
    var digits = ""
    var pointPosition = 0
    var seenPoint = false
    for c in mantissa {
        if c == "." { seenPoint = true; continue }
        digits.append(c)
        if !seenPoint { pointPosition += 1 }
    }
    while digits.first == "0" && digits.count > 1 {
        digits.removeFirst()
        pointPosition -= 1
    }
    while digits.last == "0" && digits.count > 1 { digits.removeLast() }
    return (digits, pointPosition + exponent)
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent, separators=separators,
/// sort_keys=sortKeys)`, which is the `tojson` filter transformers installs for chat templates.
func pythonJSONDumps(
    _ value: TemplateValue, indent: String?, separators: (item: String, key: String)?, sortKeys: Bool,
    ensureASCII: Bool = false
) throws(ChatTemplateError) -> String {
    let separators = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
    var out = ""
    try writeJSON(value, indent: indent, level: 0, separators: separators, sortKeys: sortKeys, into: &out)
    guard ensureASCII else { return out }
    // Non-ASCII only occurs inside string literals, so escaping afterwards is the same as json.dumps.
    var ascii = ""
    for scalar in out.unicodeScalars {
        if scalar.isASCII {
            ascii.unicodeScalars.append(scalar)
        } else {
            for unit in String(scalar).utf16 { ascii += "\\u" + hex(UInt32(unit), 4) }
        }
    }
    return ascii
}

private func writeJSON(
    _ value: TemplateValue, indent: String?, level: Int, separators: (item: String, key: String),
    sortKeys: Bool, into out: inout String
) throws(ChatTemplateError) {
    switch value {
    case .none: out += "null"
    case .bool(let b): out += b ? "true" : "false"
    case .int(let i): out += String(i)
    case .double(let d): out += jsonFloat(d)
    case .string(let s): out += jsonString(s)
    case .list(let items), .tuple(let items):
        if items.isEmpty { out += "[]"; return }
        out += "["
        for (n, item) in items.enumerated() {
            out += n == 0 ? "" : separators.item
            if let indent { out += "\n" + String(repeating: indent, count: level + 1) }
            try writeJSON(item, indent: indent, level: level + 1, separators: separators, sortKeys: sortKeys, into: &out)
        }
        if let indent { out += "\n" + String(repeating: indent, count: level) }
        out += "]"
    case .dict(let dict):
        if dict.isEmpty { out += "{}"; return }
        var entries: [(key: String, value: TemplateValue)] = []
        for entry in dict.entries {
            let key: String
            switch entry.key {
            case .string(let s): key = s
            case .int(let i): key = String(i)
            case .double(let d): key = jsonFloat(d)
            case .bool(let b): key = b ? "true" : "false"
            case .none: key = "null"
            default: throw .render("keys must be str, int, float, bool or None, not \(entry.key.pythonTypeName)")
            }
            entries.append((key, entry.value))
        }
        if sortKeys { entries.sort { $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars) } }
        out += "{"
        for (n, entry) in entries.enumerated() {
            out += n == 0 ? "" : separators.item
            if let indent { out += "\n" + String(repeating: indent, count: level + 1) }
            out += jsonString(entry.key) + separators.key
            try writeJSON(entry.value, indent: indent, level: level + 1, separators: separators, sortKeys: sortKeys, into: &out)
        }
        if let indent { out += "\n" + String(repeating: indent, count: level) }
        out += "}"
    default:
        throw .render("Object of type \(value.pythonTypeName) is not JSON serializable")
    }
}

private func jsonFloat(_ d: Double) -> String {
    if d.isNaN { return "NaN" }
    if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
    return pythonFloatRepr(d)
}

/// A JSON string literal as Python writes it with `ensure_ascii=False`: only `"`, `\` and control
/// characters are escaped.
func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if scalar.value < 0x20 { out += "\\u" + hex(scalar.value, 4) } else { out.unicodeScalars.append(scalar) }
        }
    }
    return out + "\""
}

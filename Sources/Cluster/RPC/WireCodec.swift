import Foundation

/// Encodes call and reply payloads, and the JSON texts of configurations and environment variables.
///
/// Payloads are binary (`BinaryPayload`: typed, versioned, no text to format or scan); `decode` also
/// reads JSON, which `RPCPath.legacy` sends and which texts are. Tensor bytes never travel here —
/// they go through shared memory.
enum WireCodec {
    /// A call or reply payload: binary, or JSON on the legacy path.
    static func encodePayload<T: Encodable>(_ value: T) throws(ClusterError) -> [UInt8] {
        if RPCPath.legacy { return try encode(value) }
        do {
            return try BinaryEncoder().encode(value)
        } catch {
            throw ClusterError("cannot encode \(T.self): \(describe(error))")
        }
    }

    /// JSON text (configurations travel as text; environment variables must be text).
    static func encode<T: Encodable>(_ value: T) throws(ClusterError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(value))
        } catch {
            throw ClusterError("cannot encode \(T.self): \(error)")
        }
    }

    /// Reads a binary payload or JSON, whichever `bytes` holds (a binary payload begins with a byte
    /// that never begins JSON text).
    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: @autoclosure () -> String) throws(ClusterError) -> T {
        do {
            if BinaryPayload.isBinary(bytes) { return try BinaryDecoder().decode(T.self, from: bytes) }
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw ClusterError("cannot decode \(what()) as \(T.self): \(describe(error))")
        }
    }

    /// One line for a coding error: what went wrong, and where in the value.
    static func describe(_ error: any Error) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.isEmpty ? "" : " at '\(codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: "."))'"
        }
        switch error {
        case DecodingError.dataCorrupted(let c): return c.debugDescription + path(c.codingPath)
        case DecodingError.keyNotFound(let key, let c): return "no value for key '\(key.stringValue)'" + path(c.codingPath)
        case DecodingError.typeMismatch(_, let c): return c.debugDescription + path(c.codingPath)
        case DecodingError.valueNotFound(_, let c): return c.debugDescription + path(c.codingPath)
        case EncodingError.invalidValue(_, let c): return c.debugDescription + path(c.codingPath)
        default: return "\(error)"
        }
    }
}

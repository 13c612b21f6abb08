import Foundation

/// Encodes call and reply payloads. JSON: self-describing, adequate for control messages (tensor bytes
/// never travel here — they go through shared memory).
enum WireCodec {
    static func encode<T: Encodable>(_ value: T) throws(ClusterError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(value))
        } catch {
            throw ClusterError("cannot encode \(T.self): \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: @autoclosure () -> String) throws(ClusterError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw ClusterError("cannot decode \(what()) as \(T.self): \(error)")
        }
    }
}

import Foundation

/// An error whose kind survives an actor call: a handler that throws one sends its type name and code
/// with its message, and the caller's `RemoteError` carries them, to match as it would the local error:
///
///     catch let error as RemoteError where error.code(of: EngineError.self) == .asleep
///
/// `ClusterError` and the Engine's `EngineError` conform; any error with a `code` whose raw value is a
/// string can.
public protocol CodedError: Error {
    associatedtype Code: RawRepresentable where Code.RawValue == String
    var code: Code { get }
}

extension CodedError {
    /// The name the error's type travels under, qualified by its module (`"Engine.EngineError"`).
    public var codeDomain: String { Self.codeDomain }

    /// The name `Self` travels under.
    static var codeDomain: String { String(reflecting: Self.self) }
}

extension ClusterError: CodedError {}

/// What a failure frame carries: the remote error's message, and — from peers of this protocol version
/// on — the name of its type and its code.
///
/// Payload, version 1: the byte 0xFF, then JSON `{"v":1,"type":"Engine.EngineError","code":"asleep","message":"…"}`.
/// 0xFF never begins UTF-8 text, so a payload without it is the plain UTF-8 message that peers before
/// version 1 send, read as a failure without a code. A later version may add fields (a reader skips
/// those it does not know); a payload that cannot be read at all still makes a failure, never a trap.
struct RemoteFailure: Codable, Equatable {
    static let marker: UInt8 = 0xFF
    static let version = 1
    /// Longest message sent (bytes of UTF-8): a failure must fit its frame and arrive.
    static let maximumMessageBytes = 1 << 20

    var version: Int
    var type: String?
    var code: String?
    var message: String

    init(type: String? = nil, code: String? = nil, message: String) {
        version = Self.version
        self.type = type
        self.code = code
        self.message = message
    }

    /// The failure a handler's `error` makes: a `CodedError` keeps its type and code, and a
    /// `RemoteError` (a call the handler made failed) passes on those it came with.
    init(describing error: any Error) {
        switch error {
        case let remote as RemoteError:
            self.init(type: remote.errorType, code: remote.codeName, message: remote.description)
        case let coded as any CodedError:
            self.init(type: coded.codeDomain, code: coded.codeName, message: String(describing: error))
        default:
            self.init(message: String(describing: error))
        }
    }

    private enum CodingKeys: String, CodingKey {
        case version = "v", type, code, message
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decodeIfPresent(Int.self, forKey: .version) ?? Self.version
        type = try c.decodeIfPresent(String.self, forKey: .type)
        code = try c.decodeIfPresent(String.self, forKey: .code)
        message = try c.decodeIfPresent(String.self, forKey: .message) ?? ""
    }

    /// The frame payload. A message too long for a frame is cut (at a character boundary).
    func encoded() -> [UInt8] {
        var cut = self
        if message.utf8.count > Self.maximumMessageBytes {
            cut.message = String(decoding: message.utf8.prefix(Self.maximumMessageBytes), as: UTF8.self)
        }
        // Strings and an Int always encode; the fallback only keeps this total.
        let json = (try? JSONEncoder().encode(cut)).map(Array.init) ?? Array("{\"message\":\"(unencodable failure)\"}".utf8)
        return [Self.marker] + json
    }

    /// Reads a failure frame's payload, whatever it holds: plain text from an older peer, this
    /// version's or a later one's JSON, or bytes that are neither (then the message says so).
    static func decode(_ payload: [UInt8]) -> RemoteFailure {
        guard payload.first == marker else { return RemoteFailure(message: String(decoding: payload, as: UTF8.self)) }
        let json = payload.dropFirst()
        if let failure = try? JSONDecoder().decode(RemoteFailure.self, from: Data(json)) { return failure }
        return RemoteFailure(message: "unreadable failure from the peer (\(json.count) bytes): " + String(decoding: json.prefix(200), as: UTF8.self))
    }
}

extension CodedError {
    /// The code's raw value.
    var codeName: String { code.rawValue }
}

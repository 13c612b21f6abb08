/// A typed message an actor (or the driver) answers. The name is what travels on the wire and selects
/// the handler; the payload is the Codable value itself.
///
///     struct Add: RemoteCall {
///         typealias Reply = Int
///         static let name = "math.add"
///         var a: Int, b: Int
///     }
///     let sum = try await actor.call(Add(a: 1, b: 2))
public protocol RemoteCall: Codable, Sendable {
    associatedtype Reply: Codable & Sendable
    /// Unique across the calls a process handles; prefixing with a namespace is wise.
    static var name: String { get }
}

/// An empty value, for calls without arguments and replies without content.
public struct Empty: Codable, Sendable, Hashable {
    public init() {}
}

/// An actor type a worker process can host. The driver names it (`typeName`) when spawning; the
/// worker constructs it from its `Config` and then routes calls to the handlers it declares.
///
///     final class Counter: ClusterActor {
///         struct Config: Codable, Sendable { var start: Int }
///         private let value: Mutex<Int>
///         init(config: Config, context: WorkerContext) async throws { value = Mutex(config.start) }
///         func handlers(into handlers: inout Handlers) {
///             handlers.on(Increment.self) { call, _ in self.value.withLock { $0 += call.by; return $0 } }
///         }
///     }
public protocol ClusterActor: AnyObject, Sendable {
    associatedtype Config: Codable & Sendable = Empty
    /// The name drivers spawn it by; default: the type's name.
    static var typeName: String { get }
    init(config: Config, context: WorkerContext) async throws
    /// Declares the calls the actor answers.
    func handlers(into handlers: inout Handlers)
}

extension ClusterActor {
    public static var typeName: String { String(describing: Self.self) }
}

/// The actor types a worker process can host, filled when the process starts. A spawn request only
/// names a type: nothing on the wire can make a process run code it did not already contain.
public struct ActorRegistry: Sendable {
    typealias Factory = @Sendable (_ config: [UInt8], _ context: WorkerContext) async throws -> (any ClusterActor, Handlers)

    private(set) var factories: [String: Factory] = [:]

    public init() {}

    /// Makes `type` spawnable under `type.typeName`.
    public mutating func register<A: ClusterActor>(_ type: A.Type) {
        factories[A.typeName] = { bytes, context in
            let config = try WireCodec.decode(A.Config.self, from: bytes, what: "the config of actor type '\(A.typeName)'")
            let actor = try await A(config: config, context: context)
            var handlers = Handlers()
            actor.handlers(into: &handlers)
            return (actor, handlers)
        }
    }

    /// Registered type names, sorted.
    public var typeNames: [String] { factories.keys.sorted() }
}

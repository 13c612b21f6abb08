import Cluster
import Synchronization

/// Methods added to every engine rank, the way vLLM's `worker_extension_cls` adds methods to its
/// workers: the driver runs them on all ranks with `LLM.collectiveRPC` and gets one reply per rank.
///
///     struct Checksum: RemoteCall { typealias Reply = Double; static let name = "my.checksum" }
///     struct ChecksumExtension: WorkerExtension {
///         static let name = "checksum"
///         let worker: EngineWorkerState
///         init(worker: EngineWorkerState) { self.worker = worker }
///         func handlers(into h: inout Handlers) {
///             h.on(Checksum.self) { _, _ in worker.weights.values.reduce(0) { … } }
///         }
///     }
///
/// The type must be compiled into the worker executable and registered there at start
/// (`WorkerExtensions.register(ChecksumExtension.self)`), then named in the engine's `extensions`.
/// Nothing on the wire can make a worker run code it does not contain.
public protocol WorkerExtension: Sendable {
    /// The name engines list in `extensions`.
    static var name: String { get }
    init(worker: EngineWorkerState) throws
    func handlers(into handlers: inout Handlers)
}

/// The extension types this worker process can load, by name. Filled at process start.
public enum WorkerExtensions {
    private static let registry = Mutex<[String: any WorkerExtension.Type]>([ColocateExtension.name: ColocateExtension.self])

    public static func register(_ type: any WorkerExtension.Type) {
        registry.withLock { $0[type.name] = type }
    }

    public static func lookup(_ name: String) throws(EngineError) -> any WorkerExtension.Type {
        let (found, known) = registry.withLock { ($0[name], $0.keys.sorted()) }
        guard let found else {
            throw EngineError("unknown worker extension '\(name)' (registered in this worker: \(known.joined(separator: ", ")))")
        }
        return found
    }
}

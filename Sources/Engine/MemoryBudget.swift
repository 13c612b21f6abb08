import Cluster
import Compute

/// What an engine rank may allocate on its device: `memoryUtilization × capacity`, as vLLM's
/// `gpu_memory_utilization`. Weights are charged first, then a workspace for activations, and the KV
/// cache gets what is left. Anything over the budget fails at start with a message that says what
/// needed how much.
public struct MemoryBudget: Sendable, CustomStringConvertible {
    public let device: Device
    public let utilization: Double
    public let limit: Int
    public private(set) var used = 0
    private var items: [(String, Int)] = []

    public init(device: Device, utilization: Double) throws(EngineError) {
        guard utilization > 0, utilization <= 1 else {
            throw EngineError(.invalidArgument, "memory utilization must be in (0, 1], got \(utilization)")
        }
        self.device = device
        self.utilization = utilization
        limit = device.share(utilization)
    }

    public var remaining: Int { limit - used }

    /// Charges `bytes` for `what`, or throws naming it and the budget.
    public mutating func charge(_ bytes: Int, for what: String) throws(EngineError) {
        guard bytes <= remaining else {
            throw EngineError(.overBudget, "\(what) needs \(Self.format(bytes)) but only \(Self.format(remaining)) of the budget remain (\(self))")
        }
        used += bytes
        items.append((what, bytes))
    }

    public var description: String {
        "memory utilization \(utilization) × \(Self.format(device.capacity)) of \(device.uuid) = \(Self.format(limit))"
    }

    /// Charged items and sizes, for reports.
    public var breakdown: [(String, Int)] { items }

    public static func format(_ bytes: Int) -> String { ByteCount.format(bytes) }
}

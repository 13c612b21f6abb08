/// One bundle of a placement group: the resources reserved together on one node (Ray's
/// `{"GPU": 1, "CPU": 0}`). "GPU" counts devices, CUDA GPUs or virtual CPU devices alike.
///
/// Not called `Bundle` to stay clear of Foundation's.
public struct ResourceBundle: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Devices: 0 or 1 (a bundle never holds more than one).
    public var gpu: Int
    /// CPU cores.
    public var cpu: Int

    public init(gpu: Int = 0, cpu: Int = 0) {
        self.gpu = gpu
        self.cpu = cpu
    }

    public var description: String { "{GPU: \(gpu), CPU: \(cpu)}" }

    func validate(index: Int) throws(ClusterError) {
        guard gpu == 0 || gpu == 1 else {
            throw ClusterError("bundle \(index) asks for \(gpu) GPUs; a bundle holds 0 or 1 GPU (use one bundle per device)")
        }
        guard cpu >= 0 else { throw ClusterError("bundle \(index) asks for \(cpu) CPUs; CPU must be >= 0") }
        guard gpu > 0 || cpu > 0 else {
            throw ClusterError("bundle \(index) is empty; a bundle must ask for GPU: 1 and/or CPU >= 1")
        }
    }
}

/// How the bundles of a placement group are laid out over nodes, with Ray's meanings. On one host:
/// PACK, SPREAD and STRICT_PACK all place every bundle on it (SPREAD falls back to one node), and
/// STRICT_SPREAD of more than one bundle is infeasible.
public enum PlacementStrategy: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// As few nodes as possible, best effort.
    case pack = "PACK"
    /// Across nodes, best effort.
    case spread = "SPREAD"
    /// All bundles on one node, or fail.
    case strictPack = "STRICT_PACK"
    /// Every bundle on a different node, or fail.
    case strictSpread = "STRICT_SPREAD"

    /// Parses Ray's names (`PACK`, `STRICT_SPREAD`, …), case-insensitively.
    public init(parsing text: String) throws(ClusterError) {
        guard let s = PlacementStrategy(rawValue: text.uppercased().replacingDashes()) else {
            let valid = PlacementStrategy.allCases.map(\.rawValue).joined(separator: ", ")
            throw ClusterError("unknown placement strategy '\(text)'; valid strategies: \(valid)")
        }
        self = s
    }

    public var description: String { rawValue }
}

extension String {
    fileprivate func replacingDashes() -> String { String(map { $0 == "-" ? "_" : $0 }) }
}

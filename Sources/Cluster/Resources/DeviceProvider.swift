import Compute

/// Enumerates the devices of this node. The seam through which real GPUs enter the cluster: the
/// CUDA backend supplies a provider that asks the driver; virtual CPU devices have their own.
public protocol DeviceProvider: Sendable {
    /// The devices, ordinals 0..<n in order. Throws a one-line error when enumeration fails.
    func devices() throws -> [Device]
}

/// Which devices a local cluster offers.
public enum DeviceSpec: Sendable, CustomStringConvertible {
    /// `count` virtual CPU devices; each offers `capacity` bytes (default: a fair split of physical memory).
    case cpu(count: Int, capacity: Int? = nil)
    /// The CUDA GPUs the driver enumerates (or `ClusterOptions.cudaDeviceProvider`'s).
    case cuda
    /// Devices from any provider.
    case custom(any DeviceProvider)

    /// Parses the `--devices` forms: `cpu:N`, `cpu:N:SIZE` (e.g. `cpu:4:2GiB`), `cuda`.
    public init(parsing text: String) throws(ClusterError) {
        let valid = "valid forms: cpu:N, cpu:N:SIZE (e.g. cpu:4:2GiB), cuda"
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        switch parts.first?.lowercased() {
        case "cuda" where parts.count == 1:
            self = .cuda
        case "cpu" where parts.count == 2 || parts.count == 3:
            guard let count = Int(parts[1]), count >= 1 else {
                throw ClusterError("device count '\(parts[1])' in '\(text)' is not a positive integer; \(valid)")
            }
            guard count <= VirtualCPUDevices.maximumCount else {
                throw ClusterError("device count \(count) in '\(text)' exceeds the maximum of \(VirtualCPUDevices.maximumCount) virtual CPU devices")
            }
            var capacity: Int?
            if parts.count == 3 {
                capacity = try ByteCount.parse(parts[2])
            }
            self = .cpu(count: count, capacity: capacity)
        default:
            throw ClusterError("unknown device spec '\(text)'; \(valid)")
        }
    }

    public var description: String {
        switch self {
        case .cpu(let count, nil): "cpu:\(count)"
        case .cpu(let count, let capacity?): "cpu:\(count):\(ByteCount.format(capacity))"
        case .cuda: "cuda"
        case .custom(let provider): "custom(\(provider))"
        }
    }

    /// The devices this spec stands for.
    public func devices(cudaProvider: (any DeviceProvider)? = nil) throws -> [Device] {
        switch self {
        case .cpu(let count, let capacity):
            return try VirtualCPUDevices(count: count, capacity: capacity).devices()
        case .cuda:
            return try (cudaProvider ?? CUDADriverDevices()).devices()
        case .custom(let provider):
            return try provider.devices()
        }
    }
}

/// The GPUs the CUDA driver (loaded at run time) enumerates, honouring this process's
/// `CUDA_VISIBLE_DEVICES`.
public struct CUDADriverDevices: DeviceProvider {
    public init() {}
    public func devices() throws -> [Device] {
        let cuda: CUDA
        do {
            cuda = try CUDA.load()
        } catch {
            throw ClusterError(CUDA.unavailableReason ?? "CUDA is not available: \(error)")
        }
        let devices = try cuda.devices()
        guard !devices.isEmpty else { throw ClusterError("CUDA is available but no GPU is visible (CUDA_VISIBLE_DEVICES?)") }
        return devices
    }
}

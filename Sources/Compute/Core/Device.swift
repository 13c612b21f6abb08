/// What kind of memory and arithmetic a device offers.
public enum DeviceKind: String, Sendable, Hashable, Codable, CustomStringConvertible {
    /// A virtual device carved out of host memory: real processes, shared memory and arithmetic.
    case cpu
    /// An NVIDIA GPU driven through the CUDA driver API.
    case cuda

    public var description: String { rawValue }
}

/// A device as the cluster sees it: identity, kind and how much memory it offers.
///
/// UUIDs print as nvidia-smi does (`GPU-d6a04513-23cb-b6a9-fd68-5923daa696ea`); virtual CPU devices
/// print as `CPU-…`. Colocation checks compare UUIDs, never ordinals, because ordinals change with
/// `CUDA_VISIBLE_DEVICES`.
public struct Device: Sendable, Hashable, Codable, CustomStringConvertible {
    public var kind: DeviceKind
    /// Index on its node as enumerated by the driver (CUDA) or by `--devices cpu:N`.
    public var ordinal: Int
    public var uuid: String
    /// Memory the device offers, in bytes.
    public var capacity: Int

    public init(kind: DeviceKind, ordinal: Int, uuid: String, capacity: Int) {
        self.kind = kind
        self.ordinal = ordinal
        self.uuid = uuid
        self.capacity = capacity
    }

    public var description: String { "\(kind):\(ordinal) (\(uuid))" }

    /// The host itself, for tensors that are not on any particular virtual device.
    public static let host = Device(kind: .cpu, ordinal: -1, uuid: "CPU-host", capacity: Int.max)

    /// Formats 16 bytes as nvidia-smi prints a UUID, with the given prefix (`GPU` or `CPU`).
    public static func formatUUID(prefix: String, bytes: [UInt8]) -> String {
        precondition(bytes.count == 16)
        let hex = bytes.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
        let cuts = [8, 12, 16, 20]
        var out = prefix + "-"
        for (i, ch) in hex.enumerated() {
            if cuts.contains(i) { out += "-" }
            out.append(ch)
        }
        return out
    }
}

extension Device {
    /// Bytes of `fraction` of this device's capacity, rounded down. A product too large for an `Int`
    /// (the host device's capacity is `Int.max`) is `Int.max`: no limit, rather than a trap.
    public func share(_ fraction: Double) -> Int {
        let bytes = Double(capacity) * fraction
        return bytes >= Double(Int.max) ? Int.max : Int(max(0, bytes))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `CUDA_VISIBLE_DEVICES` as the driver reads it, for the cluster's launcher, which must know which
/// physical GPUs a value names before it starts a worker with it.
///
/// The driver applies the variable itself; this only resolves it against a list of devices (those the
/// launcher sees). Entries are ordinals (`0,2`) or UUIDs (`GPU-d6a04513-…`, or a unique prefix such as
/// `GPU-d6a0`; the `GPU-` may be omitted). As in the driver, the list ends at the first entry that
/// names no device (or one already listed); an empty value hides every device; unset shows all.
public enum CUDAVisibleDevices {
    public static func resolve(_ value: String?, among devices: [Device]) -> [Device] {
        guard let value else { return devices }
        var out: [Device] = []
        for raw in value.split(separator: ",", omittingEmptySubsequences: false) {
            let entry = raw.trimmingCharacters(in: " \t")
            guard !entry.isEmpty else { break }
            let found: Device?
            if let ordinal = Int(entry) {
                found = ordinal >= 0 && ordinal < devices.count ? devices[ordinal] : nil
            } else {
                let matches = devices.filter { uuid($0.uuid, matches: entry) }
                found = matches.count == 1 ? matches[0] : nil
            }
            guard let device = found, !out.contains(device) else { break }
            out.append(device)
        }
        return out
    }

    /// Whether `uuid` (`GPU-xxxxxxxx-…`) is named by `entry`: the full UUID or a prefix of it, with or
    /// without `GPU-`, case-insensitive.
    public static func uuid(_ uuid: String, matches entry: String) -> Bool {
        let full = uuid.lowercased()
        var wanted = entry.lowercased()
        if !wanted.hasPrefix("gpu-") && !wanted.hasPrefix("mig-") { wanted = "gpu-" + wanted }
        return wanted.count > 4 && full.hasPrefix(wanted)
    }
}

extension CUDA {
    /// The devices `CUDA_VISIBLE_DEVICES` (of this process, or `value`) names among `devices`.
    public static func resolveVisibleDevices(_ value: String? = getenv("CUDA_VISIBLE_DEVICES").map { String(cString: $0) },
                                             among devices: [Device]) -> [Device] {
        CUDAVisibleDevices.resolve(value, among: devices)
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = self[...]
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}

/// Parsing and printing of memory sizes: `2GiB`, `512MiB`, `1.5G`, `4096`.
public enum ByteCount {
    /// Parses a size with an optional binary unit (KiB, MiB, GiB, TiB; K/M/G/T and KB/MB/GB/TB are read
    /// as the binary units too, as device memory is counted).
    public static func parse(_ text: String) throws(ClusterError) -> Int {
        let units: [(String, Int)] = [
            ("tib", 1 << 40), ("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10),
            ("tb", 1 << 40), ("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10),
            ("t", 1 << 40), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10), ("b", 1),
        ]
        let lower = text.lowercased()
        var number = Substring(lower)
        var scale = 1
        for (suffix, value) in units where lower.hasSuffix(suffix) {
            number = lower.dropLast(suffix.count)
            scale = value
            break
        }
        guard let value = Double(number), value.isFinite, value > 0, value * Double(scale) < 0x1p62 else {
            throw ClusterError("cannot read memory size '\(text)'; write e.g. 2GiB, 512MiB or a byte count")
        }
        return Int(value * Double(scale))
    }

    /// `6.0 GiB`, `512.0 MiB`, `100 B`.
    public static func format(_ bytes: Int) -> String {
        let units: [(String, Int)] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        for (name, value) in units where bytes >= value {
            let scaled = Double(bytes) / Double(value)
            let tenths = Int((scaled * 10).rounded())
            return "\(tenths / 10).\(tenths % 10) \(name)"
        }
        return "\(bytes) B"
    }
}

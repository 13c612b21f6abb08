/// A fraction of one device, counted in integer units of 1e-4 so that 0.6 + 0.4 fills a device
/// exactly (in floating point it would not).
public struct DeviceShare: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Units in a whole device.
    public static let unitsPerDevice = 10_000
    public var units: Int

    public init(units: Int) { self.units = units }

    /// A share of `fraction` of a device: 0 < fraction ≤ 1, rounded to the precision of 1e-4.
    public init(fraction: Double) throws(ClusterError) {
        guard fraction.isFinite, fraction > 0, fraction <= 1 else {
            throw ClusterError("device fraction \(fraction) is out of range; it must satisfy 0 < fraction <= 1")
        }
        let units = Int((fraction * Double(DeviceShare.unitsPerDevice)).rounded())
        guard units >= 1 else {
            throw ClusterError("device fraction \(fraction) is below the precision of 0.0001")
        }
        self.units = units
    }

    public static let zero = DeviceShare(units: 0)
    public static let whole = DeviceShare(units: unitsPerDevice)

    public var fraction: Double { Double(units) / Double(DeviceShare.unitsPerDevice) }

    public static func < (a: DeviceShare, b: DeviceShare) -> Bool { a.units < b.units }
    public static func + (a: DeviceShare, b: DeviceShare) -> DeviceShare { DeviceShare(units: a.units + b.units) }
    public static func - (a: DeviceShare, b: DeviceShare) -> DeviceShare { DeviceShare(units: a.units - b.units) }

    /// `0.4`, `1`, `0.3333`: the shortest decimal that names the units exactly.
    public var description: String {
        let whole = units / DeviceShare.unitsPerDevice
        var rest = units % DeviceShare.unitsPerDevice
        guard rest != 0 else { return "\(whole)" }
        var digits = String(rest + DeviceShare.unitsPerDevice).dropFirst()   // zero-padded to 4 digits
        while digits.hasSuffix("0") { digits = digits.dropLast(); rest /= 10 }
        return "\(whole).\(digits)"
    }
}

/// Brain floating point: the upper 16 bits of an IEEE `Float` (8 exponent bits, 7 mantissa bits).
/// Conversion from `Float` rounds to nearest even, as PyTorch and CUDA's `__float2bfloat16` do.
public struct BFloat16: Sendable, Hashable, Codable, CustomStringConvertible {
    public var bitPattern: UInt16

    @inlinable public init(bitPattern: UInt16) { self.bitPattern = bitPattern }

    @inlinable public init(_ value: Float) {
        let bits = value.bitPattern
        if value.isNaN {
            // Keep it a quiet NaN whatever the payload.
            bitPattern = UInt16(truncatingIfNeeded: bits >> 16) | 0x0040
        } else {
            let roundingBias: UInt32 = 0x7FFF &+ ((bits >> 16) & 1)
            bitPattern = UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
        }
    }

    @inlinable public var float: Float { Float(bitPattern: UInt32(bitPattern) << 16) }

    public var description: String { float.description }
}

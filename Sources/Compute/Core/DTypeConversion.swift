/// Element conversion between dtypes — the one place where f32 ⇄ f16 ⇄ bf16 happens on the host.
/// Weight sync uses it to turn a trainer's f32 master weights into an engine's bf16/f16 in the copy.
public enum DTypeConversion {
    /// Converts `count` elements. Same-dtype is a memcpy; float ⇄ float converts; integer ⇄ integer
    /// widens or truncates; integer ⇄ float goes through `Float`.
    public static func convert(from src: UnsafeRawPointer, _ srcType: DType, to dst: UnsafeMutableRawPointer, _ dstType: DType, count: Int) {
        if srcType == dstType {
            dst.copyMemory(from: src, byteCount: count * srcType.byteSize)
            return
        }
        switch (srcType, dstType) {
        case (.f32, .bf16):
            let s = src.assumingMemoryBound(to: Float.self), d = dst.assumingMemoryBound(to: UInt16.self)
            for i in 0..<count { d[i] = BFloat16(s[i]).bitPattern }
        case (.bf16, .f32):
            let s = src.assumingMemoryBound(to: UInt16.self), d = dst.assumingMemoryBound(to: UInt32.self)
            for i in 0..<count { d[i] = UInt32(s[i]) << 16 }
        case (.f32, .f16):
            let s = src.assumingMemoryBound(to: Float.self), d = dst.assumingMemoryBound(to: Float16.self)
            for i in 0..<count { d[i] = Float16(s[i]) }
        case (.f16, .f32):
            let s = src.assumingMemoryBound(to: Float16.self), d = dst.assumingMemoryBound(to: Float.self)
            for i in 0..<count { d[i] = Float(s[i]) }
        default:
            for i in 0..<count { store(load(src, srcType, i), dst, dstType, i) }
        }
    }

    @inline(__always) static func load(_ p: UnsafeRawPointer, _ t: DType, _ i: Int) -> Double {
        switch t {
        case .f32: Double(p.load(fromByteOffset: i * 4, as: Float.self))
        case .f16: Double(Float(p.load(fromByteOffset: i * 2, as: Float16.self)))
        case .bf16: Double(BFloat16(bitPattern: p.load(fromByteOffset: i * 2, as: UInt16.self)).float)
        case .i32: Double(p.load(fromByteOffset: i * 4, as: Int32.self))
        case .i64: Double(p.load(fromByteOffset: i * 8, as: Int64.self))
        case .u8: Double(p.load(fromByteOffset: i, as: UInt8.self))
        }
    }

    @inline(__always) static func store(_ v: Double, _ p: UnsafeMutableRawPointer, _ t: DType, _ i: Int) {
        switch t {
        case .f32: p.storeBytes(of: Float(v), toByteOffset: i * 4, as: Float.self)
        case .f16: p.storeBytes(of: Float16(Float(v)), toByteOffset: i * 2, as: Float16.self)
        case .bf16: p.storeBytes(of: BFloat16(Float(v)).bitPattern, toByteOffset: i * 2, as: UInt16.self)
        case .i32: p.storeBytes(of: Int32(clamping: Int64(v)), toByteOffset: i * 4, as: Int32.self)
        case .i64: p.storeBytes(of: Int64(v), toByteOffset: i * 8, as: Int64.self)
        case .u8: p.storeBytes(of: UInt8(clamping: Int64(v)), toByteOffset: i, as: UInt8.self)
        }
    }
}

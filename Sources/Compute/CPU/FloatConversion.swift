/// Widening of f32/bf16/f16 memory to f32, for weights converted block by block before use.
extension CPUKernels {
    /// Converts `count` elements of f32, bf16 or f16 memory to f32. The loops are simple enough for
    /// LLVM to vectorise: bf16 becomes `vpmovzxwd` + `vpslld`, f16 becomes `vcvtph2ps` (F16C).
    public static func convertToFloat(_ source: UnsafeRawPointer, _ dtype: DType, count: Int, into destination: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .f32:
            destination.update(from: source.assumingMemoryBound(to: Float.self), count: count)
        case .bf16:
            let s = source.assumingMemoryBound(to: UInt16.self)
            for i in 0..<count { destination[i] = Float(bitPattern: UInt32(s[i]) << 16) }
        case .f16:
            let s = source.assumingMemoryBound(to: Float16.self)
            for i in 0..<count { destination[i] = Float(s[i]) }
        default:
            preconditionFailure("convertToFloat of \(dtype) memory")
        }
    }

    /// `destination[i] += source[i]` for f32, bf16 or f16 memory.
    public static func accumulateAsFloat(_ source: UnsafeRawPointer, _ dtype: DType, count: Int, into destination: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .f32:
            let s = source.assumingMemoryBound(to: Float.self)
            for i in 0..<count { destination[i] += s[i] }
        case .bf16:
            let s = source.assumingMemoryBound(to: UInt16.self)
            for i in 0..<count { destination[i] += Float(bitPattern: UInt32(s[i]) << 16) }
        case .f16:
            let s = source.assumingMemoryBound(to: Float16.self)
            for i in 0..<count { destination[i] += Float(s[i]) }
        default:
            preconditionFailure("accumulateAsFloat of \(dtype) memory")
        }
    }

    /// Calls `body` with the elements of a small float vector (a norm weight, a bias) as f32: the
    /// tensor's own memory when it is f32, else a converted temporary copy.
    static func withFloats<R>(_ t: Tensor, _ body: (UnsafePointer<Float>) -> R) -> R {
        precondition(t.memory != nil && t.dtype.isFloatingPoint && t.isContiguous, "expected a contiguous float host tensor, got \(t)")
        if t.dtype == .f32 { return body(t.pointer(Float.self)) }
        let tmp = UnsafeMutablePointer<Float>.allocate(capacity: max(t.count, 1))
        defer { tmp.deallocate() }
        convertToFloat(UnsafeRawPointer(t.rawPointer), t.dtype, count: t.count, into: tmp)
        return body(tmp)
    }
}

/// A typed, shaped view of memory on a device.
///
/// Tensors are values; the memory they view is shared and reference counted (`HostMemory` on CPU,
/// a CUDA allocation on GPU). Shapes are row-major; `strides` are in elements. Most ops require
/// contiguous tensors; `rows(_:)` and `reshaped(_:)` make views without copying.
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
    /// Host memory backing the tensor (CPU devices). Nil for CUDA tensors.
    public let memory: HostMemory?
    /// CUDA backing, when the tensor lives on a GPU (kept type-erased so Compute/Core knows no CUDA).
    public let deviceStorage: (any DeviceStorage)?
    public let byteOffset: Int
    public let dtype: DType
    public let shape: [Int]
    public let strides: [Int]

    public init(memory: HostMemory, byteOffset: Int = 0, dtype: DType, shape: [Int], strides: [Int]? = nil) {
        self.memory = memory
        self.deviceStorage = nil
        self.byteOffset = byteOffset
        self.dtype = dtype
        self.shape = shape
        self.strides = strides ?? Tensor.contiguousStrides(shape)
        precondition(byteOffset + Self.extentBytes(shape: shape, strides: self.strides, dtype: dtype) <= memory.byteCount,
                     "tensor view \(shape) \(dtype) at \(byteOffset) exceeds its memory of \(memory.byteCount) bytes")
    }

    public init(deviceStorage: any DeviceStorage, byteOffset: Int = 0, dtype: DType, shape: [Int]) {
        self.memory = nil
        self.deviceStorage = deviceStorage
        self.byteOffset = byteOffset
        self.dtype = dtype
        self.shape = shape
        self.strides = Tensor.contiguousStrides(shape)
    }

    /// A zero-filled host tensor.
    public static func zeros(_ shape: [Int], dtype: DType = .f32, device: Device = .host) throws(ComputeError) -> Tensor {
        let count = shape.reduce(1, *)
        let memory = try HostMemory.allocate(byteCount: count * dtype.byteSize, device: device)
        return Tensor(memory: memory, dtype: dtype, shape: shape)
    }

    /// A host f32 tensor holding `values`.
    public init(_ values: [Float], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        let t = try! Tensor.zeros(shape, dtype: .f32)  // allocation of a caller-sized array's worth of bytes
        values.withUnsafeBufferPointer { src in
            t.pointer(Float.self).update(from: src.baseAddress!, count: values.count)
        }
        self = t
    }

    /// A host i32 tensor holding `values`.
    public init(int32 values: [Int32], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        let t = try! Tensor.zeros(shape, dtype: .i32)
        values.withUnsafeBufferPointer { src in
            t.pointer(Int32.self).update(from: src.baseAddress!, count: values.count)
        }
        self = t
    }

    public var device: Device { memory?.device ?? deviceStorage!.device }
    public var rank: Int { shape.count }
    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { count * dtype.byteSize }
    public var isContiguous: Bool { strides == Tensor.contiguousStrides(shape) }

    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = s
            s *= shape[i]
        }
        return strides
    }

    static func extentBytes(shape: [Int], strides: [Int], dtype: DType) -> Int {
        if shape.contains(0) { return 0 }
        var last = 0
        for (n, s) in zip(shape, strides) { last += (n - 1) * s }
        return (last + 1) * dtype.byteSize
    }

    /// Start of the tensor's bytes in host memory. Traps for device tensors (a programming error).
    public var rawPointer: UnsafeMutableRawPointer {
        guard let memory else { preconditionFailure("host pointer of a \(device.kind) tensor") }
        return memory.baseAddress + byteOffset
    }

    /// Typed pointer to the first element. The caller picks the Swift type matching `dtype`.
    public func pointer<T>(_: T.Type) -> UnsafeMutablePointer<T> {
        rawPointer.assumingMemoryBound(to: T.self)
    }

    /// Rows `range` of the first dimension, as a view.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0])
        var s = shape
        s[0] = range.count
        let offset = byteOffset + range.lowerBound * strides[0] * dtype.byteSize
        if let memory { return Tensor(memory: memory, byteOffset: offset, dtype: dtype, shape: s, strides: strides) }
        return Tensor(deviceStorage: deviceStorage!, byteOffset: offset, dtype: dtype, shape: s)
    }

    /// A contiguous tensor of `shape` and `dtype` at `offset` bytes into this one's memory (host or device).
    public func view(byteOffset offset: Int, dtype: DType, shape: [Int]) -> Tensor {
        precondition(offset >= 0 && offset + shape.reduce(1, *) * dtype.byteSize <= byteCount, "view of \(shape) \(dtype) at \(offset) outside \(byteCount) bytes")
        if let memory { return Tensor(memory: memory, byteOffset: byteOffset + offset, dtype: dtype, shape: shape) }
        return Tensor(deviceStorage: deviceStorage!, byteOffset: byteOffset + offset, dtype: dtype, shape: shape)
    }

    /// The same elements under another shape (contiguous tensors only).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(isContiguous && newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        if let memory { return Tensor(memory: memory, byteOffset: byteOffset, dtype: dtype, shape: newShape) }
        return Tensor(deviceStorage: deviceStorage!, byteOffset: byteOffset, dtype: dtype, shape: newShape)
    }

    /// Elements as `Float`, converting from f16/bf16/integers (host, contiguous).
    public func floats() -> [Float] {
        precondition(isContiguous)
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { dst in
            DTypeConversion.convert(from: UnsafeRawPointer(rawPointer), dtype, to: UnsafeMutableRawPointer(dst.baseAddress!), .f32, count: count)
        }
        return out
    }

    /// Elements as `Int`, from integer dtypes (host, contiguous).
    public func integers() -> [Int] {
        precondition(isContiguous)
        switch dtype {
        case .i64: return (0..<count).map { Int(pointer(Int64.self)[$0]) }
        case .i32: return (0..<count).map { Int(pointer(Int32.self)[$0]) }
        case .u8: return (0..<count).map { Int(pointer(UInt8.self)[$0]) }
        default: return floats().map { Int($0) }
        }
    }

    /// A contiguous host copy in `dtype`.
    public func converted(to dtype: DType, device: Device = .host) throws(ComputeError) -> Tensor {
        let out = try Tensor.zeros(shape, dtype: dtype, device: device)
        out.copy(from: self)
        return out
    }

    /// Copies `source` into this tensor element by element, converting dtypes (host, contiguous,
    /// same element count).
    public func copy(from source: Tensor) {
        precondition(source.count == count, "copy of \(source.shape) into \(shape)")
        precondition(isContiguous && source.isContiguous)
        DTypeConversion.convert(from: UnsafeRawPointer(source.rawPointer), source.dtype, to: rawPointer, dtype, count: count)
    }

    public var description: String { "Tensor(\(dtype), \(shape), \(device.kind))" }
}

/// Memory of a tensor that lives on an accelerator. Implemented by the CUDA backend.
public protocol DeviceStorage: AnyObject, Sendable {
    var device: Device { get }
    var byteCount: Int { get }
    /// Device address of the first byte (a `CUdeviceptr` for CUDA).
    var deviceAddress: UInt64 { get }
}

import Compute

/// Where one tensor of a safetensors file lies.
public struct SafeTensorInfo: Sendable, Hashable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Bytes of the tensor relative to the start of the file (not of the data section).
    public var byteRange: Range<Int>

    public init(name: String, dtype: DType, shape: [Int], byteRange: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteRange = byteRange
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// The validated header of a safetensors file:
/// `u64 little-endian header length N | N bytes of JSON | data`.
///
/// The JSON maps tensor names to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative
/// to the data section) plus an optional `"__metadata__"` object of strings. Validation follows the
/// reference implementation: every size is overflow-checked, each range holds exactly
/// `product(shape) * dtype size` bytes, and the ranges tile the data section (no overlap, no gap, no
/// trailing bytes).
struct SafeTensorsHeader {
    /// The limit of the reference implementation (`N_LEN`).
    static let maxHeaderBytes = 100_000_000

    /// safetensors dtypes colocate does not compute with; named so that the error says "unsupported"
    /// rather than "unknown".
    static let unsupportedDTypes: Set<String> = [
        "BOOL", "F4", "F6_E2M3", "F6_E3M2", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
        "I16", "U16", "U32", "F64", "U64", "C64",
    ]

    /// Tensors in data-offset order.
    var tensors: [SafeTensorInfo]
    var metadata: [String: String]
    /// File offset of the data section (8 + header length).
    var dataStart: Int

    /// Validates the first `bytes.count` bytes of a file.
    init(file bytes: UnsafeRawBufferPointer, path: String) throws(SafeTensorsError) {
        let fileSize = bytes.count
        guard fileSize >= 8 else {
            throw SafeTensorsError(.fileTooSmall, path: path, "file of \(fileSize) bytes is too small for a safetensors header (8 bytes at least)")
        }
        let rawLength = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard rawLength <= UInt64(Self.maxHeaderBytes) else {
            throw SafeTensorsError(.headerTooLarge, path: path, "header length \(rawLength) exceeds the limit of \(Self.maxHeaderBytes) bytes")
        }
        let headerLength = Int(rawLength)
        guard headerLength <= fileSize - 8 else {
            throw SafeTensorsError(.headerBeyondFile, path: path, "header length \(headerLength) runs past the end of the file (\(fileSize - 8) bytes after the length)")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLength)])
        guard String(validating: headerBytes.bindMemory(to: UInt8.self), as: UTF8.self) != nil else {
            throw SafeTensorsError(.headerNotUTF8, path: path, "header is not valid UTF-8")
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(headerBytes)
        } catch {
            throw SafeTensorsError(.invalidJSON, path: path, "header is not valid JSON: \(error)")
        }
        guard let members = json.objectMembers else {
            throw SafeTensorsError(.headerNotObject, path: path, "header is a JSON \(json.typeName), not an object")
        }

        dataStart = 8 + headerLength
        let dataSize = fileSize - dataStart
        metadata = [:]
        var tensors: [SafeTensorInfo] = []
        tensors.reserveCapacity(members.count)
        for (name, entry) in members {
            if name == "__metadata__" {
                metadata = try Self.metadata(entry, path: path)
                continue
            }
            tensors.append(try Self.tensor(name, entry, dataStart: dataStart, dataSize: dataSize, path: path))
        }
        // Data-offset order; zero-sized tensors sort before a tensor starting at the same offset.
        tensors.sort { ($0.byteRange.lowerBound, $0.byteRange.upperBound, $0.name) < ($1.byteRange.lowerBound, $1.byteRange.upperBound, $1.name) }
        // As the reference loader requires, the tensors tile the data section exactly: each begins
        // where the previous ended, the first at 0, and the last ends at the end of the file.
        var previous: SafeTensorInfo?
        var end = dataStart
        for t in tensors {
            if t.byteRange.lowerBound < end, let p = previous {
                throw SafeTensorsError(.overlappingTensors, path: path, tensor: t.name,
                                       "data \(Self.relative(t.byteRange, dataStart)) overlaps tensor '\(p.name)' at \(Self.relative(p.byteRange, dataStart))")
            }
            if t.byteRange.lowerBound > end {
                let after = if let p = previous { "tensor '\(p.name)' ends at \(p.byteRange.upperBound - dataStart)" } else { "the data section begins at 0" }
                throw SafeTensorsError(.gapInData, path: path, tensor: t.name,
                                       "data \(Self.relative(t.byteRange, dataStart)) leaves a gap: \(after)")
            }
            end = t.byteRange.upperBound
            previous = t
        }
        guard end == fileSize else {
            throw SafeTensorsError(.trailingData, path: path,
                                   "\(fileSize - end) bytes after the last tensor's data (the data section has \(dataSize) bytes, the tensors \(end - dataStart))")
        }
        self.tensors = tensors
    }

    private static func relative(_ r: Range<Int>, _ start: Int) -> String {
        "[\(r.lowerBound - start), \(r.upperBound - start))"
    }

    private static func metadata(_ entry: JSONValue, path: String) throws(SafeTensorsError) -> [String: String] {
        guard let members = entry.objectMembers else {
            throw SafeTensorsError(.invalidMetadata, path: path, "__metadata__ is a JSON \(entry.typeName), not an object of strings")
        }
        var out: [String: String] = [:]
        for (key, value) in members {
            guard let s = value.stringValue else {
                throw SafeTensorsError(.invalidMetadata, path: path, "__metadata__ value of '\(key)' is a JSON \(value.typeName), not a string")
            }
            out[key] = s
        }
        return out
    }

    private static func tensor(
        _ name: String, _ entry: JSONValue, dataStart: Int, dataSize: Int, path: String
    ) throws(SafeTensorsError) -> SafeTensorInfo {
        guard entry.objectMembers != nil else {
            throw SafeTensorsError(.invalidEntry, path: path, tensor: name, "entry is a JSON \(entry.typeName), not an object")
        }
        guard let dtypeValue = entry["dtype"] else {
            throw SafeTensorsError(.invalidEntry, path: path, tensor: name, "entry has no dtype")
        }
        guard let dtypeName = dtypeValue.stringValue else {
            throw SafeTensorsError(.invalidEntry, path: path, tensor: name, "dtype is a JSON \(dtypeValue.typeName), not a string")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            if unsupportedDTypes.contains(dtypeName) {
                throw SafeTensorsError(.unsupportedDType, path: path, tensor: name,
                                       "dtype \(dtypeName) is not supported (supported: F32, F16, BF16, I32, I64, U8)")
            }
            throw SafeTensorsError(.unknownDType, path: path, tensor: name, "unknown dtype '\(dtypeName)'")
        }

        guard let shapeValue = entry["shape"] else {
            throw SafeTensorsError(.invalidEntry, path: path, tensor: name, "entry has no shape")
        }
        guard let dims = shapeValue.arrayValue else {
            throw SafeTensorsError(.invalidShape, path: path, tensor: name, "shape is a JSON \(shapeValue.typeName), not an array")
        }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        var count = 1
        var overflow = false
        for d in dims {
            guard case .int(let n) = d, n >= 0 else {
                throw SafeTensorsError(.invalidShape, path: path, tensor: name, "shape \(JSONValue.array(dims).serialized()) is not a list of non-negative integers")
            }
            shape.append(n)
            let (product, o) = count.multipliedReportingOverflow(by: n)
            count = product
            overflow = overflow || o
        }
        // A zero dimension makes the tensor empty however large the others are.
        if shape.contains(0) { count = 0; overflow = false }
        let (byteCount, o) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow && !o else {
            throw SafeTensorsError(.shapeOverflow, path: path, tensor: name, "shape \(shape) has more bytes than fit in a 64-bit size")
        }

        guard let offsetsValue = entry["data_offsets"] else {
            throw SafeTensorsError(.invalidEntry, path: path, tensor: name, "entry has no data_offsets")
        }
        guard let offsets = offsetsValue.arrayValue, offsets.count == 2,
              case .int(let begin) = offsets[0], case .int(let end) = offsets[1], begin >= 0, end >= 0
        else {
            throw SafeTensorsError(.invalidDataOffsets, path: path, tensor: name,
                                   "data_offsets \(offsetsValue.serialized()) is not [begin, end] of non-negative integers")
        }
        guard begin <= end else {
            throw SafeTensorsError(.invalidDataOffsets, path: path, tensor: name, "data_offsets [\(begin), \(end)] ends before it begins")
        }
        guard end <= dataSize else {
            throw SafeTensorsError(.dataOutOfBounds, path: path, tensor: name,
                                   "data_offsets [\(begin), \(end)] run past the end of the data (\(dataSize) bytes)")
        }
        guard end - begin == byteCount else {
            throw SafeTensorsError(.sizeMismatch, path: path, tensor: name,
                                   "data_offsets [\(begin), \(end)] hold \(end - begin) bytes but \(dtypeName) \(shape) needs \(byteCount)")
        }
        return SafeTensorInfo(name: name, dtype: dtype, shape: shape, byteRange: (dataStart + begin)..<(dataStart + end))
    }
}

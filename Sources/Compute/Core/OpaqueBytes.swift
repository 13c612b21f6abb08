/// Little-endian fixed-width fields in and out of the opaque bytes of a ``MemoryHandle``.
struct OpaqueBytesWriter {
    private(set) var bytes: [UInt8] = []

    mutating func put<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
}

/// Reads what ``OpaqueBytesWriter`` wrote; the caller checks the total length first.
struct OpaqueBytesReader {
    private let bytes: [UInt8]
    private var at = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func get<T: FixedWidthInteger>(_: T.Type) -> T {
        var value = T.zero
        withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes[at..<at + MemoryLayout<T>.size]) }
        at += MemoryLayout<T>.size
        return T(littleEndian: value)
    }
}

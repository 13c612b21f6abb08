/// The binary form of call and reply payloads: typed, versioned, self-describing like JSON (fields by
/// name, so a reader skips fields it does not know and finds optional ones missing), without text.
///
/// Layout: the byte 0xC1 — never a byte of UTF-8 text, so never the first byte of a JSON payload —,
/// the format version (1), then one value. A value is a tag byte and its content:
///
///     0x00 nil                      0x01 false            0x02 true
///     0x03 signed integer: zigzag LEB128                   0x04 unsigned integer: LEB128
///     0x05 Double: 8 bytes, IEEE 754 little-endian         0x06 Float: 4 bytes
///     0x07 string: LEB128 byte count, UTF-8                0x08 bytes ([UInt8]): LEB128 count, bytes
///     0x09 array: u32 count, values                        0x0A keyed: u32 count, then per entry
///                                                               a key (LEB128 byte count, UTF-8) and a value
///
/// A reader checks every length against the bytes it has, the UTF-8 of every string, a nesting depth
/// of at most `maximumDepth`, and that nothing follows the value; anything else is a `DecodingError`.
enum BinaryPayload {
    static let marker: UInt8 = 0xC1
    static let version: UInt8 = 1
    /// Deepest nesting of arrays and keyed values a reader accepts (a hostile payload cannot exhaust the stack).
    static let maximumDepth = 128

    enum Tag: UInt8 {
        case null = 0x00, `false` = 0x01, `true` = 0x02, signed = 0x03, unsigned = 0x04
        case float64 = 0x05, float32 = 0x06, string = 0x07, bytes = 0x08, array = 0x09, keyed = 0x0A
    }

    /// Whether `bytes` is a binary payload (else it is JSON, from a peer or path that sends JSON).
    static func isBinary(_ bytes: [UInt8]) -> Bool { bytes.first == marker }

    struct IndexKey: CodingKey {
        var stringValue: String { "\(index)" }
        var intValue: Int? { index }
        let index: Int
        init(_ index: Int) { self.index = index }
        init?(stringValue: String) { return nil }
        init?(intValue: Int) { index = intValue }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Decodes a `Decodable` value from the binary payload format (`BinaryPayload`). The bytes come from
/// another process: every read is bounds-checked, and what does not fit the format is a
/// `DecodingError.dataCorrupted` that says what and where, never a trap.
struct BinaryDecoder {
    func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        let reader = BinaryReader(bytes)
        guard bytes.count >= 2, bytes[0] == BinaryPayload.marker else {
            throw reader.corrupt("not a binary payload (\(bytes.count) bytes, first \(bytes.first.map { "0x" + String($0, radix: 16) } ?? "none"))", at: 0, [])
        }
        guard bytes[1] == BinaryPayload.version else {
            throw reader.corrupt("binary payload version \(bytes[1]) is not the version this process reads (\(BinaryPayload.version))", at: 1, [])
        }
        let end = try reader.skip(2, depth: 0, [])
        guard end == bytes.count else {
            throw reader.corrupt("\(bytes.count - end) bytes follow the value", at: end, [])
        }
        return try reader.decode(T.self, at: 2, [])
    }
}

/// Reads values out of one payload. Offsets are positions in `bytes`; each read checks them.
final class BinaryReader {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func corrupt(_ message: String, at offset: Int, _ codingPath: [any CodingKey]) -> DecodingError {
        .dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(message) (byte \(offset))"))
    }

    func truncated(_ offset: Int, _ need: Int, _ codingPath: [any CodingKey]) -> DecodingError {
        corrupt("truncated: \(need) more bytes needed, \(max(0, bytes.count - offset)) left", at: offset, codingPath)
    }

    // MARK: Primitive reads

    func tag(at offset: Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> BinaryPayload.Tag {
        guard offset < bytes.count else { throw truncated(offset, 1, codingPath()) }
        guard let tag = BinaryPayload.Tag(rawValue: bytes[offset]) else {
            throw corrupt("unknown value tag 0x\(String(bytes[offset], radix: 16))", at: offset, codingPath())
        }
        return tag
    }

    /// An LEB128 integer at `offset`, which moves past it. At most 10 bytes, no bits beyond 64.
    func leb(_ offset: inout Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        let start = offset
        while true {
            guard offset < bytes.count else { throw truncated(offset, 1, codingPath()) }
            let byte = bytes[offset]
            offset += 1
            if shift == 63 && byte > 1 { throw corrupt("an integer longer than 64 bits", at: start, codingPath()) }
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
    }

    /// A length (LEB128) at `offset`, checked against the bytes left after it.
    func length(_ offset: inout Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> Int {
        let start = offset
        let n = try leb(&offset, codingPath())
        guard n <= UInt64(bytes.count - offset) else { throw truncated(offset, Int(clamping: n), codingPath()) }
        _ = start
        return Int(n)
    }

    func u32(_ offset: inout Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> Int {
        guard bytes.count - offset >= 4 else { throw truncated(offset, 4, codingPath()) }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[offset + i]) << (8 * UInt32(i)) }
        offset += 4
        return Int(v)
    }

    func fixed64(_ offset: Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> UInt64 {
        guard bytes.count - offset >= 8 else { throw truncated(offset, 8, codingPath()) }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        return v
    }

    /// UTF-8 text of `count` bytes at `offset`, validated.
    func text(_ offset: Int, _ count: Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> String {
        guard let s = String(validating: bytes[offset..<offset + count], as: UTF8.self) else {
            throw corrupt("a string that is not UTF-8", at: offset, codingPath())
        }
        return s
    }

    /// The end of the value at `offset`: checks its lengths, tags and depth, not its UTF-8.
    func skip(_ offset: Int, depth: Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> Int {
        var at = offset + 1
        switch try tag(at: offset, codingPath()) {
        case .null, .false, .true: return at
        case .signed, .unsigned:
            _ = try leb(&at, codingPath())
            return at
        case .float64:
            guard bytes.count - at >= 8 else { throw truncated(at, 8, codingPath()) }
            return at + 8
        case .float32:
            guard bytes.count - at >= 4 else { throw truncated(at, 4, codingPath()) }
            return at + 4
        case .string, .bytes:
            let n = try length(&at, codingPath())
            return at + n
        case .array, .keyed:
            let keyed = bytes[offset] == BinaryPayload.Tag.keyed.rawValue
            guard depth < BinaryPayload.maximumDepth else {
                throw corrupt("nested more than \(BinaryPayload.maximumDepth) deep", at: offset, codingPath())
            }
            let count = try u32(&at, codingPath())
            for _ in 0..<count {
                if keyed {
                    let n = try length(&at, codingPath())
                    at += n
                }
                at = try skip(at, depth: depth + 1, codingPath())
            }
            return at
        }
    }

    // MARK: Typed reads

    func decodeNil(at offset: Int) -> Bool { offset < bytes.count && bytes[offset] == BinaryPayload.Tag.null.rawValue }

    func decodeBool(at offset: Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> Bool {
        switch try tag(at: offset, codingPath()) {
        case .true: return true
        case .false: return false
        case let other: throw mismatch(Bool.self, other, offset, codingPath())
        }
    }

    func decodeInteger<T: FixedWidthInteger>(_ type: T.Type, at offset: Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> T {
        var at = offset + 1
        let value: T?
        switch try tag(at: offset, codingPath()) {
        case .signed:
            let raw = try leb(&at, codingPath())
            let wide = Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))  // zigzag back
            value = T(exactly: wide)
            if value == nil { throw corrupt("the integer \(wide) does not fit \(T.self)", at: offset, codingPath()) }
        case .unsigned:
            let raw = try leb(&at, codingPath())
            value = T(exactly: raw)
            if value == nil { throw corrupt("the integer \(raw) does not fit \(T.self)", at: offset, codingPath()) }
        case let other: throw mismatch(T.self, other, offset, codingPath())
        }
        return value!
    }

    func decodeDouble(at offset: Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> Double {
        switch try tag(at: offset, codingPath()) {
        case .float64: return Double(bitPattern: try fixed64(offset + 1, codingPath()))
        case .float32: return Double(try decodeFloat(at: offset, codingPath()))
        case let other: throw mismatch(Double.self, other, offset, codingPath())
        }
    }

    func decodeFloat(at offset: Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> Float {
        switch try tag(at: offset, codingPath()) {
        case .float32:
            guard bytes.count - offset - 1 >= 4 else { throw truncated(offset + 1, 4, codingPath()) }
            var v: UInt32 = 0
            for i in 0..<4 { v |= UInt32(bytes[offset + 1 + i]) << (8 * UInt32(i)) }
            return Float(bitPattern: v)
        case .float64: return Float(Double(bitPattern: try fixed64(offset + 1, codingPath())))
        case let other: throw mismatch(Float.self, other, offset, codingPath())
        }
    }

    func decodeString(at offset: Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> String {
        var at = offset + 1
        guard try tag(at: offset, codingPath()) == .string else { throw mismatch(String.self, try tag(at: offset, codingPath()), offset, codingPath()) }
        let n = try length(&at, codingPath())
        return try text(at, n, codingPath())
    }

    func mismatch(_ type: Any.Type, _ tag: BinaryPayload.Tag, _ offset: Int, _ codingPath: @autoclosure () -> [any CodingKey]) -> DecodingError {
        .typeMismatch(type, .init(codingPath: codingPath(), debugDescription: "expected \(type), found a value tagged \(tag) (byte \(offset))"))
    }

    /// A value of type `T` at `offset` (whose extent was checked by `skip`).
    func decode<T: Decodable>(_ type: T.Type, at offset: Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> T {
        switch type {
        case is String.Type: return try decodeString(at: offset, codingPath()) as! T
        case is Int.Type: return try decodeInteger(Int.self, at: offset, codingPath()) as! T
        case is Double.Type: return try decodeDouble(at: offset, codingPath()) as! T
        case is Bool.Type: return try decodeBool(at: offset, codingPath()) as! T
        case is UInt64.Type: return try decodeInteger(UInt64.self, at: offset, codingPath()) as! T
        case is Int32.Type: return try decodeInteger(Int32.self, at: offset, codingPath()) as! T
        case is Int64.Type: return try decodeInteger(Int64.self, at: offset, codingPath()) as! T
        case is UInt32.Type: return try decodeInteger(UInt32.self, at: offset, codingPath()) as! T
        case is Float.Type: return try decodeFloat(at: offset, codingPath()) as! T
        case _ where T.self == [UInt8].self && offset < bytes.count && bytes[offset] == BinaryPayload.Tag.bytes.rawValue:
            var at = offset + 1
            let n = try length(&at, codingPath())
            return Array(bytes[at..<at + n]) as! T
        default:
            return try T(from: BinaryValueDecoder(reader: self, offset: offset, codingPath: codingPath()))
        }
    }
}

/// The `Decoder` one value is decoded through.
struct BinaryValueDecoder: Decoder {
    let reader: BinaryReader
    let offset: Int
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(try BinaryKeyedDecoder<Key>(reader: reader, offset: offset, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try BinaryUnkeyedDecoder(reader: reader, offset: offset, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        BinarySingleValueDecoder(reader: reader, offset: offset, codingPath: codingPath)
    }
}

struct BinarySingleValueDecoder: SingleValueDecodingContainer {
    let reader: BinaryReader
    let offset: Int
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool { reader.decodeNil(at: offset) }
    func decode(_ type: Bool.Type) throws -> Bool { try reader.decodeBool(at: offset, codingPath) }
    func decode(_ type: String.Type) throws -> String { try reader.decodeString(at: offset, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try reader.decodeDouble(at: offset, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { try reader.decodeFloat(at: offset, codingPath) }
    func decode(_ type: Int.Type) throws -> Int { try reader.decodeInteger(type, at: offset, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try reader.decodeInteger(type, at: offset, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try reader.decodeInteger(type, at: offset, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try reader.decodeInteger(type, at: offset, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try reader.decodeInteger(type, at: offset, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try reader.decodeInteger(type, at: offset, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try reader.decodeInteger(type, at: offset, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try reader.decodeInteger(type, at: offset, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try reader.decodeInteger(type, at: offset, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try reader.decodeInteger(type, at: offset, codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try reader.decode(type, at: offset, codingPath) }
}

struct BinaryKeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    /// One entry: where its key's UTF-8 and its value are.
    private struct Entry {
        var key: Range<Int>
        var value: Int
    }

    let reader: BinaryReader
    let codingPath: [any CodingKey]
    /// The entries in order; a lookup compares key bytes (the first of duplicate keys counts).
    private let entries: [Entry]
    /// By key, for containers too large to search entry by entry (a dictionary's).
    private let index: [String: Int]?
    private static var indexFrom: Int { 16 }

    init(reader: BinaryReader, offset: Int, codingPath: [any CodingKey]) throws {
        self.reader = reader
        self.codingPath = codingPath
        let tag = try reader.tag(at: offset, codingPath)
        guard tag == .keyed else { throw reader.mismatch([String: Any].self, tag, offset, codingPath) }
        var at = offset + 1
        let count = try reader.u32(&at, codingPath)
        var entries: [Entry] = []
        entries.reserveCapacity(min(count, (reader.bytes.count - at) / 2))
        for _ in 0..<count {
            let n = try reader.length(&at, codingPath)
            let key = at..<at + n
            at += n
            entries.append(Entry(key: key, value: at))
            at = try reader.skip(at, depth: codingPath.count + 1, codingPath)
        }
        self.entries = entries
        if entries.count > Self.indexFrom {
            var index: [String: Int] = [:]
            index.reserveCapacity(entries.count)
            for e in entries {
                let key = try reader.text(e.key.lowerBound, e.key.count, codingPath)
                if index[key] == nil { index[key] = e.value }
            }
            self.index = index
        } else {
            index = nil
        }
    }

    var allKeys: [Key] {
        entries.compactMap { e in
            String(validating: reader.bytes[e.key], as: UTF8.self).flatMap { Key(stringValue: $0) }
        }
    }

    private func find(_ name: String) -> Int? {
        if let index { return index[name] }
        var name = name
        return name.withUTF8 { utf8 -> Int? in
            reader.bytes.withUnsafeBufferPointer { bytes -> Int? in
                for e in entries where e.key.count == utf8.count {
                    if utf8.isEmpty || memcmp(bytes.baseAddress! + e.key.lowerBound, utf8.baseAddress!, utf8.count) == 0 { return e.value }
                }
                return nil
            }
        }
    }

    func contains(_ key: Key) -> Bool { find(key.stringValue) != nil }

    private func offset(_ key: Key) throws -> Int {
        guard let at = find(key.stringValue) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no value for key '\(key.stringValue)'"))
        }
        return at
    }

    func decodeNil(forKey key: Key) throws -> Bool { reader.decodeNil(at: try offset(key)) }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try reader.decodeBool(at: try offset(key), codingPath + [key]) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try reader.decodeString(at: try offset(key), codingPath + [key]) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try reader.decodeDouble(at: try offset(key), codingPath + [key]) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try reader.decodeFloat(at: try offset(key), codingPath + [key]) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try reader.decodeInteger(type, at: try offset(key), codingPath + [key]) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try reader.decodeInteger(type, at: try offset(key), codingPath + [key]) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try reader.decodeInteger(type, at: try offset(key), codingPath + [key]) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try reader.decodeInteger(type, at: try offset(key), codingPath + [key]) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try reader.decodeInteger(type, at: try offset(key), codingPath + [key]) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try reader.decodeInteger(type, at: try offset(key), codingPath + [key]) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try reader.decodeInteger(type, at: try offset(key), codingPath + [key]) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try reader.decodeInteger(type, at: try offset(key), codingPath + [key]) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try reader.decodeInteger(type, at: try offset(key), codingPath + [key]) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try reader.decodeInteger(type, at: try offset(key), codingPath + [key]) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try reader.decode(type, at: try offset(key), codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        KeyedDecodingContainer(try BinaryKeyedDecoder<NestedKey>(reader: reader, offset: try offset(key), codingPath: codingPath + [key]))
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try BinaryUnkeyedDecoder(reader: reader, offset: try offset(key), codingPath: codingPath + [key])
    }

    func superDecoder() throws -> any Decoder {
        guard let at = find("super") else {
            throw DecodingError.keyNotFound(BinaryPayload.IndexKey(0), .init(codingPath: codingPath, debugDescription: "no value for key 'super'"))
        }
        return BinaryValueDecoder(reader: reader, offset: at, codingPath: codingPath)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        BinaryValueDecoder(reader: reader, offset: try offset(key), codingPath: codingPath + [key])
    }
}

struct BinaryUnkeyedDecoder: UnkeyedDecodingContainer {
    let reader: BinaryReader
    let codingPath: [any CodingKey]
    let count: Int?
    private(set) var currentIndex = 0
    /// Where the next element starts.
    private var at: Int
    var isAtEnd: Bool { currentIndex >= count! }

    init(reader: BinaryReader, offset: Int, codingPath: [any CodingKey]) throws {
        self.reader = reader
        self.codingPath = codingPath
        let tag = try reader.tag(at: offset, codingPath)
        guard tag == .array else { throw reader.mismatch([Any].self, tag, offset, codingPath) }
        at = offset + 1
        count = try reader.u32(&at, codingPath)
    }

    private var path: [any CodingKey] { codingPath + [BinaryPayload.IndexKey(currentIndex)] }

    /// The next element's offset; moves past it.
    private mutating func next() throws -> Int {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: path, debugDescription: "the array has only \(count!) elements"))
        }
        let start = at
        at = try reader.skip(start, depth: codingPath.count + 1, path)
        currentIndex += 1
        return start
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, reader.decodeNil(at: at) else { return false }
        _ = try next()
        return true
    }
    mutating func decode(_ type: Bool.Type) throws -> Bool { try reader.decodeBool(at: try next(), path) }
    mutating func decode(_ type: String.Type) throws -> String { try reader.decodeString(at: try next(), path) }
    mutating func decode(_ type: Double.Type) throws -> Double { try reader.decodeDouble(at: try next(), path) }
    mutating func decode(_ type: Float.Type) throws -> Float { try reader.decodeFloat(at: try next(), path) }
    mutating func decode(_ type: Int.Type) throws -> Int { try reader.decodeInteger(type, at: try next(), path) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try reader.decodeInteger(type, at: try next(), path) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try reader.decodeInteger(type, at: try next(), path) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try reader.decodeInteger(type, at: try next(), path) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try reader.decodeInteger(type, at: try next(), path) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try reader.decodeInteger(type, at: try next(), path) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try reader.decodeInteger(type, at: try next(), path) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try reader.decodeInteger(type, at: try next(), path) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try reader.decodeInteger(type, at: try next(), path) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try reader.decodeInteger(type, at: try next(), path) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let start = try next()
        return try reader.decode(type, at: start, codingPath + [BinaryPayload.IndexKey(currentIndex - 1)])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let start = try next()
        return KeyedDecodingContainer(try BinaryKeyedDecoder<NestedKey>(reader: reader, offset: start, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let start = try next()
        return try BinaryUnkeyedDecoder(reader: reader, offset: start, codingPath: path)
    }

    mutating func superDecoder() throws -> any Decoder {
        let start = try next()
        return BinaryValueDecoder(reader: reader, offset: start, codingPath: path)
    }
}

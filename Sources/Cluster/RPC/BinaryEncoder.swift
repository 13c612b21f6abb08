/// Encodes any `Encodable` value in the binary payload format (`BinaryPayload`): no text, no
/// intermediate tree, one growing byte array.
///
/// Containers are written in place, so values must be encoded in order, as synthesized `Codable`
/// conformances do: once a container's parent (or an earlier sibling) is written to again, the
/// container is closed, and writing to it fails with `EncodingError.invalidValue` rather than
/// producing a corrupt payload.
struct BinaryEncoder {
    func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let writer = BinaryWriter()
        writer.bytes.append(BinaryPayload.marker)
        writer.bytes.append(BinaryPayload.version)
        try writer.encodeValue(value, codingPath: [])
        writer.finishAll()
        if let failure = writer.failure { throw failure }
        return writer.bytes
    }
}

/// The bytes being written, and the stack of containers and value slots still open.
final class BinaryWriter {
    /// A place for exactly one value (a nested value or a super encoder), or an open array or keyed
    /// container whose element count is patched in when it closes.
    final class Scope {
        enum Kind { case slot, array, keyed }
        var kind: Kind
        /// Slots: whether the value was written. Containers: where the u32 count goes.
        var filled = false
        var countOffset = 0
        var count: UInt32 = 0
        /// Slots: the container opened in it, if any.
        var container: Scope?
        init(_ kind: Kind) { self.kind = kind }
    }

    var bytes: [UInt8] = []
    private var open: [Scope] = []
    /// The first misuse seen where the `Encoder` API cannot throw (a second container of another kind).
    var failure: EncodingError?

    init() { bytes.reserveCapacity(128) }

    // MARK: Scopes

    func push(_ scope: Scope) { open.append(scope) }

    /// Makes `scope` the innermost open one, closing every scope opened after it. Throws when it was
    /// closed already (written to out of order).
    func enter(_ scope: Scope, codingPath: @autoclosure () -> [any CodingKey]) throws {
        guard open.last !== scope else { return }
        guard open.contains(where: { $0 === scope }) else {
            fail("a container was written after its parent moved on (values must be encoded in order)", codingPath())
            throw failure!
        }
        while let last = open.last, last !== scope {
            close(open.removeLast())
        }
    }

    /// Closes `scope` and everything opened after it.
    func closeThrough(_ scope: Scope) {
        guard open.contains(where: { $0 === scope }) else { return }
        while let last = open.popLast() {
            close(last)
            if last === scope { return }
        }
    }

    func finishAll() {
        while let last = open.popLast() { close(last) }
    }

    private func close(_ scope: Scope) {
        switch scope.kind {
        case .slot:
            // A value that encoded nothing (an empty struct, a super encoder left unused) is an empty keyed value.
            if !scope.filled {
                bytes.append(BinaryPayload.Tag.keyed.rawValue)
                appendU32(0)
            }
        case .array, .keyed:
            withUnsafeBytes(of: scope.count.littleEndian) { raw in
                for i in 0..<4 { bytes[scope.countOffset + i] = raw[i] }
            }
        }
    }

    /// Opens a container in `slot` (which must be the innermost open scope and still empty).
    func openContainer(_ kind: Scope.Kind, in slot: Scope) -> Scope? {
        guard open.last === slot, !slot.filled else { return nil }
        slot.filled = true
        bytes.append(kind == .keyed ? BinaryPayload.Tag.keyed.rawValue : BinaryPayload.Tag.array.rawValue)
        let scope = Scope(kind)
        scope.countOffset = bytes.count
        appendU32(0)
        push(scope)
        slot.container = scope
        return scope
    }

    func fail(_ message: String, _ codingPath: @autoclosure () -> [any CodingKey]) {
        if failure == nil {
            failure = .invalidValue((), .init(codingPath: codingPath(), debugDescription: "binary encoding: \(message)"))
        }
    }

    // MARK: Values

    func appendU32(_ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    func appendLEB(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    func appendString(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            appendLEB(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    func writeNil() { bytes.append(BinaryPayload.Tag.null.rawValue) }
    func write(_ v: Bool) { bytes.append(v ? BinaryPayload.Tag.true.rawValue : BinaryPayload.Tag.false.rawValue) }
    func write(_ v: String) {
        bytes.append(BinaryPayload.Tag.string.rawValue)
        appendString(v)
    }
    func write(_ v: Double) {
        bytes.append(BinaryPayload.Tag.float64.rawValue)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }
    func write(_ v: Float) {
        bytes.append(BinaryPayload.Tag.float32.rawValue)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }
    func writeSigned<T: FixedWidthInteger & SignedInteger>(_ v: T) {
        bytes.append(BinaryPayload.Tag.signed.rawValue)
        let wide = Int64(v)
        appendLEB(UInt64(bitPattern: (wide << 1) ^ (wide >> 63)))  // zigzag: small magnitudes stay short
    }
    func writeUnsigned<T: FixedWidthInteger & UnsignedInteger>(_ v: T) {
        bytes.append(BinaryPayload.Tag.unsigned.rawValue)
        appendLEB(UInt64(v))
    }

    /// Writes one value at the current position: primitives directly, anything else through its
    /// `encode(to:)` into a slot of its own.
    func encodeValue<T: Encodable>(_ value: T, codingPath: @autoclosure () -> [any CodingKey]) throws {
        // By exact type: a cast would also take, say, an empty `[String]` for a `[UInt8]`.
        switch T.self {
        case is String.Type: write(value as! String)
        case is Int.Type: writeSigned(value as! Int)
        case is Double.Type: write(value as! Double)
        case is Bool.Type: write(value as! Bool)
        case is UInt64.Type: writeUnsigned(value as! UInt64)
        case is Int32.Type: writeSigned(value as! Int32)
        case is Int64.Type: writeSigned(value as! Int64)
        case is UInt32.Type: writeUnsigned(value as! UInt32)
        case is Float.Type: write(value as! Float)
        case _ where T.self == [UInt8].self:
            let v = value as! [UInt8]
            bytes.append(BinaryPayload.Tag.bytes.rawValue)
            appendLEB(UInt64(v.count))
            bytes.append(contentsOf: v)
        default:
            let slot = Scope(.slot)
            push(slot)
            try value.encode(to: BinaryValueEncoder(writer: self, slot: slot, codingPath: codingPath()))
            closeThrough(slot)
        }
    }
}

/// The `Encoder` one value is encoded through; it writes into its slot.
struct BinaryValueEncoder: Encoder {
    let writer: BinaryWriter
    let slot: BinaryWriter.Scope
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    /// A new container in this value's slot, or the one it opened already: a second request for the
    /// same kind (a subclass and its superclass encoding into one encoder) writes into the same
    /// container, as with `JSONEncoder`.
    private func container(_ kind: BinaryWriter.Scope.Kind) -> BinaryWriter.Scope {
        if let opened = slot.container, opened.kind == kind { return opened }
        if let scope = writer.openContainer(kind, in: slot) { return scope }
        writer.fail("a value asked for a second container, or one of another kind", codingPath)
        return BinaryWriter.Scope(kind)  // detached: nothing written through it reaches the payload
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(BinaryKeyedEncoder<Key>(writer: writer, scope: container(.keyed), codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        BinaryUnkeyedEncoder(writer: writer, scope: container(.array), codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        BinarySingleValueEncoder(writer: writer, slot: slot, codingPath: codingPath)
    }
}

struct BinarySingleValueEncoder: SingleValueEncodingContainer {
    let writer: BinaryWriter
    let slot: BinaryWriter.Scope
    let codingPath: [any CodingKey]

    private func claim() throws {
        try writer.enter(slot, codingPath: codingPath)
        guard !slot.filled else {
            throw EncodingError.invalidValue((), .init(codingPath: codingPath, debugDescription: "binary encoding: a single value container was written twice"))
        }
        slot.filled = true
    }

    mutating func encodeNil() throws { try claim(); writer.writeNil() }
    mutating func encode(_ value: Bool) throws { try claim(); writer.write(value) }
    mutating func encode(_ value: String) throws { try claim(); writer.write(value) }
    mutating func encode(_ value: Double) throws { try claim(); writer.write(value) }
    mutating func encode(_ value: Float) throws { try claim(); writer.write(value) }
    mutating func encode(_ value: Int) throws { try claim(); writer.writeSigned(value) }
    mutating func encode(_ value: Int8) throws { try claim(); writer.writeSigned(value) }
    mutating func encode(_ value: Int16) throws { try claim(); writer.writeSigned(value) }
    mutating func encode(_ value: Int32) throws { try claim(); writer.writeSigned(value) }
    mutating func encode(_ value: Int64) throws { try claim(); writer.writeSigned(value) }
    mutating func encode(_ value: UInt) throws { try claim(); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt8) throws { try claim(); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt16) throws { try claim(); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt32) throws { try claim(); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt64) throws { try claim(); writer.writeUnsigned(value) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        try writer.enter(slot, codingPath: codingPath)
        guard !slot.filled else {
            throw EncodingError.invalidValue((), .init(codingPath: codingPath, debugDescription: "binary encoding: a single value container was written twice"))
        }
        // The value fills this slot itself: through a nested slot that is closed before this returns.
        slot.filled = true
        try writer.encodeValue(value, codingPath: codingPath)
    }
}

struct BinaryKeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let writer: BinaryWriter
    let scope: BinaryWriter.Scope
    let codingPath: [any CodingKey]

    /// Opens the entry for `key`: the container must still be open; the key goes out, the count grows.
    private func entry(_ key: Key) throws {
        try writer.enter(scope, codingPath: codingPath + [key])
        writer.appendString(key.stringValue)
        scope.count += 1
    }

    mutating func encodeNil(forKey key: Key) throws { try entry(key); writer.writeNil() }
    mutating func encode(_ value: Bool, forKey key: Key) throws { try entry(key); writer.write(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { try entry(key); writer.write(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { try entry(key); writer.write(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { try entry(key); writer.write(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { try entry(key); writer.writeSigned(value) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try entry(key); writer.writeSigned(value) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try entry(key); writer.writeSigned(value) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try entry(key); writer.writeSigned(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try entry(key); writer.writeSigned(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try entry(key); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try entry(key); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try entry(key); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try entry(key); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try entry(key); writer.writeUnsigned(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try entry(key)
        try writer.encodeValue(value, codingPath: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        nestedEncoder(key).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        nestedEncoder(key).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { nestedEncoder(Key(stringValue: "super")) }

    mutating func superEncoder(forKey key: Key) -> any Encoder { nestedEncoder(key) }

    /// An encoder for the value at `key`, in a slot that stays open until this container is written again.
    private func nestedEncoder(_ key: Key?) -> BinaryValueEncoder {
        let path = codingPath + (key.map { [$0] } ?? [])
        guard let key else {
            writer.fail("no key 'super' in \(Key.self)", codingPath)
            return BinaryValueEncoder(writer: writer, slot: BinaryWriter.Scope(.slot), codingPath: path)
        }
        return writer.nestedEncoder(at: path) { try entry(key) }
    }
}

struct BinaryUnkeyedEncoder: UnkeyedEncodingContainer {
    let writer: BinaryWriter
    let scope: BinaryWriter.Scope
    let codingPath: [any CodingKey]
    var count: Int { Int(scope.count) }

    private func element() throws {
        try writer.enter(scope, codingPath: codingPath + [BinaryPayload.IndexKey(count)])
        scope.count += 1
    }

    mutating func encodeNil() throws { try element(); writer.writeNil() }
    mutating func encode(_ value: Bool) throws { try element(); writer.write(value) }
    mutating func encode(_ value: String) throws { try element(); writer.write(value) }
    mutating func encode(_ value: Double) throws { try element(); writer.write(value) }
    mutating func encode(_ value: Float) throws { try element(); writer.write(value) }
    mutating func encode(_ value: Int) throws { try element(); writer.writeSigned(value) }
    mutating func encode(_ value: Int8) throws { try element(); writer.writeSigned(value) }
    mutating func encode(_ value: Int16) throws { try element(); writer.writeSigned(value) }
    mutating func encode(_ value: Int32) throws { try element(); writer.writeSigned(value) }
    mutating func encode(_ value: Int64) throws { try element(); writer.writeSigned(value) }
    mutating func encode(_ value: UInt) throws { try element(); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt8) throws { try element(); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt16) throws { try element(); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt32) throws { try element(); writer.writeUnsigned(value) }
    mutating func encode(_ value: UInt64) throws { try element(); writer.writeUnsigned(value) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        let index = count
        try element()
        try writer.encodeValue(value, codingPath: codingPath + [BinaryPayload.IndexKey(index)])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        nestedEncoder().container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { nestedEncoder().unkeyedContainer() }

    mutating func superEncoder() -> any Encoder { nestedEncoder() }

    private func nestedEncoder() -> BinaryValueEncoder {
        writer.nestedEncoder(at: codingPath + [BinaryPayload.IndexKey(count)]) { try element() }
    }
}

extension BinaryWriter {
    /// An encoder for a container nested at `path`, in a slot that stays open until its parent is written
    /// again; `enter` opens the parent's entry for it. A parent that has moved on is a recorded failure
    /// (reported when encoding ends), not a trap.
    func nestedEncoder(at path: [any CodingKey], entering enter: () throws -> Void) -> BinaryValueEncoder {
        do {
            try enter()
        } catch {
            fail("a container was written after its parent moved on", path)
            return BinaryValueEncoder(writer: self, slot: Scope(.slot), codingPath: path)
        }
        let slot = Scope(.slot)
        push(slot)
        return BinaryValueEncoder(writer: self, slot: slot, codingPath: path)
    }
}

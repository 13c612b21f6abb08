/// One message on an actor connection.
///
/// Wire layout, little-endian:
///
///     u32 length      bytes after this field
///     u8  kind        call, reply, failure, fdCarrier
///     u8  fdCount     descriptors that belong to this frame (sent with SCM_RIGHTS, see below)
///     u64 requestID   pairs a reply with its call
///     u16 nameLength, name (UTF-8)   the call's name (empty in replies)
///     payload         the encoded call or reply (`BinaryPayload`, or JSON from the legacy path: the
///                     first byte tells which); for failures a `RemoteFailure` (the message, and the
///                     error's type and code), or from older peers the bare UTF-8 message
///
/// `cshim_recv_with_fd` takes at most one descriptor per `recvmsg`, so each descriptor travels in a
/// `sendmsg` of its own: the first `fdCount - 1` ride on empty `fdCarrier` frames sent just before,
/// the last on the frame itself. The reader queues descriptors as they arrive and hands the frame its
/// `fdCount`; a byte stream keeps them in order.
struct Frame: Sendable {
    enum Kind: UInt8, Sendable {
        case call = 1
        case reply = 2
        case failure = 3
        case fdCarrier = 4
    }

    var kind: Kind
    var requestID: UInt64
    var name: String
    var payload: [UInt8]
    var attachments: [OwnedFD] = []

    static let headerSize = 4 + 1 + 1 + 8 + 2
    /// Frames larger than this are a protocol error (the connection is closed).
    static let maximumLength = 1 << 30

    /// Serialises the frame with `fdCount` as given (the descriptors themselves travel separately).
    /// The sender checks what the reader will check: a frame over `maximumLength`, or a name over
    /// 65535 bytes, is refused here rather than sent and dropped with the whole connection there.
    func encoded(fdCount: Int) throws(ClusterError) -> [UInt8] {
        let nameBytes = Array(name.utf8)
        guard nameBytes.count <= Int(UInt16.max) else {
            throw ClusterError(.messageTooLarge, "a call name of \(nameBytes.count) bytes is longer than the 65535 a frame carries")
        }
        guard payload.count <= Frame.maximumLength - (Frame.headerSize - 4) - nameBytes.count else {
            throw ClusterError(.messageTooLarge, "a message of \(payload.count) bytes is larger than the \(Frame.maximumLength) bytes a frame carries")
        }
        guard (0...255).contains(fdCount) else {
            throw ClusterError(.messageTooLarge, "a message carries at most 255 file descriptors, got \(fdCount)")
        }
        var out = [UInt8]()
        out.reserveCapacity(Frame.headerSize + nameBytes.count + payload.count)
        let length = UInt32(Frame.headerSize - 4 + nameBytes.count + payload.count)
        out.appendLittleEndian(length)
        out.append(kind.rawValue)
        out.append(UInt8(fdCount))
        out.appendLittleEndian(requestID)
        out.appendLittleEndian(UInt16(nameBytes.count))
        out.append(contentsOf: nameBytes)
        out.append(contentsOf: payload)
        return out
    }

    /// Parses one frame from the front of `buffer`. Returns the frame, its fdCount, and how
    /// many bytes it took, or nil when the buffer does not hold a whole frame yet.
    static func parse(_ buffer: UnsafeRawBufferPointer) throws(ClusterError) -> (frame: Frame, fdCount: Int, size: Int)? {
        guard buffer.count >= 4 else { return nil }
        let length = Int(buffer.loadUnaligned(as: UInt32.self).littleEndian)
        guard length >= headerSize - 4, length <= maximumLength else {
            throw ClusterError("protocol error: frame length \(length) is out of range")
        }
        guard buffer.count >= 4 + length else { return nil }
        guard let kind = Kind(rawValue: buffer[4]) else {
            throw ClusterError("protocol error: unknown frame kind \(buffer[4])")
        }
        let fdCount = Int(buffer[5])
        let requestID = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 6, as: UInt64.self))
        let nameLength = Int(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: 14, as: UInt16.self)))
        guard headerSize + nameLength <= 4 + length else {
            throw ClusterError("protocol error: name length \(nameLength) exceeds the frame")
        }
        // Validated, not repaired: a name that is not UTF-8 is a corrupt frame, not some other call.
        guard let name = String(validating: buffer[headerSize..<headerSize + nameLength], as: UTF8.self) else {
            throw ClusterError("protocol error: the frame's call name is not UTF-8")
        }
        let payload = Array(buffer[(headerSize + nameLength)..<(4 + length)])
        return (Frame(kind: kind, requestID: requestID, name: name, payload: payload), fdCount, 4 + length)
    }
}

extension Array where Element == UInt8 {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

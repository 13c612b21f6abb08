#if canImport(Glibc)
import Glibc
#endif
import CShims

/// The per-cluster secret that authenticates TCP connections between a driver and its workers.
///
/// The driver makes 32 random bytes; workers get them through their environment (set by the hosting
/// Ray actor, which gets them as an actor argument), never on a command line, and the worker removes
/// the variable from its own environment once read. Every TCP connection starts with a mutual
/// challenge–response before any frame is read:
///
///     server → client   "COLOCTCP" (8 bytes), server nonce Ns (32)
///     client → server   client nonce Nc (32), HMAC-SHA256(K, "colocate client" ‖ Ns ‖ Nc)
///     server → client   HMAC-SHA256(K, "colocate server" ‖ Ns ‖ Nc)
///
/// Fresh nonces on both sides make a recorded exchange useless to replay; the secret itself never
/// crosses the wire. Codes are compared in constant time. A peer that sends anything else, or nothing
/// within `handshakeTimeout`, is refused and disconnected before its bytes reach the frame parser.
public struct ClusterSecret: Sendable, Equatable {
    /// The worker's environment variable holding the secret, hex.
    public static let environmentKey = "COLOCATE_CLUSTER_SECRET"
    static let magic = Array("COLOCTCP".utf8)
    static let nonceSize = 32
    static let handshakeTimeout: Duration = .seconds(5)

    let bytes: [UInt8]

    /// 32 bytes from the kernel's random source.
    public static func random() throws(ClusterError) -> ClusterSecret {
        ClusterSecret(bytes: try randomBytes(32))
    }

    /// From its hex form; nil unless it is 64 hex digits (32 bytes) or more, even in length.
    public init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count >= 64, digits.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let hi = ClusterSecret.nibble(digits[i]), let lo = ClusterSecret.nibble(digits[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
        }
        bytes = out
    }

    init(bytes: [UInt8]) { self.bytes = bytes }

    /// Lower-case hex, for the environment of a worker.
    public var hex: String { bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }

    // MARK: Handshake

    /// The accepting side's half. Throws (and the caller closes `fd`) unless the peer proves it
    /// holds the secret.
    func authenticateClient(_ fd: Int32) throws(ClusterError) {
        try withHandshakeTimeout(fd) { () throws(ClusterError) in
            let serverNonce = try ClusterSecret.randomBytes(ClusterSecret.nonceSize)
            try TCPSocket.writeAll(fd, ClusterSecret.magic + serverNonce)
            let answer = try TCPSocket.readExactly(fd, ClusterSecret.nonceSize + 32)
            let clientNonce = Array(answer[0..<ClusterSecret.nonceSize])
            let code = Array(answer[ClusterSecret.nonceSize...])
            let expected = mac("colocate client", serverNonce, clientNonce)
            guard HMACSHA256.constantTimeEqual(code, expected) else {
                throw ClusterError(.protocolViolation, "a TCP peer failed authentication (wrong cluster secret, or not a colocate worker)")
            }
            try TCPSocket.writeAll(fd, mac("colocate server", serverNonce, clientNonce))
        }
    }

    /// The connecting side's half: proves the secret, then checks that the server holds it too.
    func authenticateServer(_ fd: Int32, peer: String) throws(ClusterError) {
        try withHandshakeTimeout(fd) { () throws(ClusterError) in
            let greeting = try TCPSocket.readExactly(fd, ClusterSecret.magic.count + ClusterSecret.nonceSize)
            guard Array(greeting[0..<ClusterSecret.magic.count]) == ClusterSecret.magic else {
                throw ClusterError(.protocolViolation, "\(peer) is not a colocate control endpoint")
            }
            let serverNonce = Array(greeting[ClusterSecret.magic.count...])
            let clientNonce = try ClusterSecret.randomBytes(ClusterSecret.nonceSize)
            try TCPSocket.writeAll(fd, clientNonce + mac("colocate client", serverNonce, clientNonce))
            let proof: [UInt8]
            do {
                proof = try TCPSocket.readExactly(fd, 32)
            } catch {
                throw ClusterError(.protocolViolation, "\(peer) refused this connection: wrong cluster secret")
            }
            guard HMACSHA256.constantTimeEqual(proof, mac("colocate server", serverNonce, clientNonce)) else {
                throw ClusterError(.protocolViolation, "\(peer) does not hold the cluster secret")
            }
        }
    }

    private func mac(_ label: String, _ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        HMACSHA256.authenticationCode(key: bytes, message: Array(label.utf8) + a + b)
    }

    private func withHandshakeTimeout(_ fd: Int32, _ body: () throws(ClusterError) -> Void) throws(ClusterError) {
        _ = cshim_set_socket_timeouts(fd, Int32(ClusterSecret.handshakeTimeout.inMicroseconds / 1000))
        try body()
        // Frames afterwards block as long as they need; the connection's own deadlines apply.
        _ = cshim_set_socket_timeouts(fd, 0)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// `SystemRandomNumberGenerator` reads the kernel's CSPRNG (getrandom) on Linux.
    static func randomBytes(_ count: Int) throws(ClusterError) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }
}

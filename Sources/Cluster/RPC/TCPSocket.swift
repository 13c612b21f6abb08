#if canImport(Glibc)
import Glibc
#endif
import CShims

/// A TCP endpoint, written `host:port` (`[v6]:port` for IPv6 literals); in a driver or peer address it
/// is prefixed `tcp://` so that it cannot be mistaken for a Unix socket path.
public struct TCPAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public static let scheme = "tcp://"

    /// Parses `host:port`, `[v6]:port` or either with the `tcp://` prefix; nil when malformed.
    public init?(_ text: String) {
        var rest = Substring(text)
        if rest.hasPrefix(TCPAddress.scheme) { rest = rest.dropFirst(TCPAddress.scheme.count) }
        guard let colon = rest.lastIndex(of: ":"), let port = UInt16(rest[rest.index(after: colon)...]), port > 0 else { return nil }
        var host = rest[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty else { return nil }
        self.init(host: String(host), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    /// `tcp://host:port`.
    public var url: String { TCPAddress.scheme + description }
}

/// Thin wrappers over the TCP socket calls, every result checked in one place. Descriptors are
/// close-on-exec and have TCP_NODELAY set (the control plane sends small frames and waits for replies).
enum TCPSocket {
    /// A listening socket on `host` (an address of this machine; "0.0.0.0" for all) and `port` (0: any
    /// free port). Returns the descriptor and the port it got.
    static func listen(host: String, port: UInt16 = 0) throws(ClusterError) -> (fd: Int32, port: UInt16) {
        let info = try resolve(host, port: port, passive: true)
        defer { freeaddrinfo(info) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClusterError.errno("cannot create TCP socket") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let e = ClusterError.errno("cannot bind TCP \(TCPAddress(host: host, port: port))")
            close(fd)
            throw e
        }
        guard Glibc.listen(fd, 128) == 0 else {
            let e = ClusterError.errno("cannot listen on TCP \(TCPAddress(host: host, port: port))")
            close(fd)
            throw e
        }
        return (fd, localPort(fd))
    }

    /// A socket connected to `address`, failing after `timeout` (the socket's send timeout bounds
    /// `connect` on Linux).
    static func connect(_ address: TCPAddress, timeout: Duration = .seconds(10)) throws(ClusterError) -> Int32 {
        let info = try resolve(address.host, port: address.port, passive: false)
        defer { freeaddrinfo(info) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClusterError.errno("cannot create TCP socket") }
        _ = cshim_set_socket_timeouts(fd, Int32(clamping: timeout.inMicroseconds / 1000))
        var r: Int32
        repeat { r = Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) } while r != 0 && errno == EINTR
        guard r == 0 else {
            let e = ClusterError.errno("cannot connect to \(address)")
            close(fd)
            throw e
        }
        _ = cshim_set_socket_timeouts(fd, 0)
        setNoDelay(fd)
        return fd
    }

    /// The next connection (see `UnixSocket.accept`), with TCP_NODELAY set.
    static func accept(_ listener: Int32) -> Int32? {
        guard let fd = UnixSocket.accept(listener)?.take() else { return nil }
        setNoDelay(fd)
        return fd
    }

    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// The port a bound socket got.
    static func localPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { return 0 }
        let family = Int32(storage.ss_family)
        return withUnsafePointer(to: &storage) { p -> UInt16 in
            if family == AF_INET6 {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }

    /// Reads exactly `count` bytes, or throws (EOF, error, or the socket's receive timeout).
    static func readExactly(_ fd: Int32, _ count: Int) throws(ClusterError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw n == 0 ? ClusterError(.protocolViolation, "the peer closed the connection during the handshake")
                             : ClusterError.errno("cannot read the handshake")
            }
            got += n
        }
        return out
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(ClusterError) {
        try UnixSocket.sendAll(fd, bytes, attach: -1)
    }

    private static func resolve(_ host: String, port: UInt16, passive: Bool) throws(ClusterError) -> UnsafeMutablePointer<addrinfo> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        if passive { hints.ai_flags = AI_PASSIVE }
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let result else {
            throw ClusterError(.invalidArgument, "cannot resolve host '\(host)': \(String(cString: gai_strerror(rc)))")
        }
        return result
    }
}

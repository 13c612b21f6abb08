#if canImport(Glibc)
import Compute
import Glibc
#endif
import Foundation
import Synchronization
import Testing
import Diagnostics

@testable import Cluster

/// The TCP control plane: SHA-256/HMAC against published vectors, a call round trip over TCP on
/// 127.0.0.1 after the challenge–response, and peers that do not hold the secret refused.
@Suite struct RayTCPTransportTests {
    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test func sha256MatchesFIPSVectors() {
        #expect(Self.hex(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Self.hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Self.hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func hmacMatchesRFC4231() {
        // Test case 1, and test case 6 (a key longer than the block size).
        let code1 = HMACSHA256.authenticationCode(key: Array(repeating: 0x0b, count: 20), message: Array("Hi There".utf8))
        #expect(Self.hex(code1) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        let code6 = HMACSHA256.authenticationCode(key: Array(repeating: 0xaa, count: 131),
                                                  message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8))
        #expect(Self.hex(code6) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        #expect(HMACSHA256.constantTimeEqual(code1, code1) && !HMACSHA256.constantTimeEqual(code1, code6))
    }

    @Test func secretRoundTripsThroughHex() throws {
        let s = try ClusterSecret.random()
        #expect(s.bytes.count == 32 && ClusterSecret(hex: s.hex) == s)
        #expect(ClusterSecret(hex: "abc") == nil && ClusterSecret(hex: String(repeating: "zz", count: 32)) == nil)
        #expect(TCPAddress("tcp://10.0.0.2:4000") == TCPAddress(host: "10.0.0.2", port: 4000))
        #expect(TCPAddress("[::1]:80")?.host == "::1" && TCPAddress("nohost") == nil && TCPAddress(":12") == nil)
    }

    /// Where the test server's replies are sent from: a thread of its own, not the test process's
    /// cooperative pool, which the CPU-heavy tests running beside these can hold for longer than a
    /// call's deadline (now kept on time by `CallDeadlines` whatever the pool does).
    static let replier = DedicatedThread(name: "test.replier")

    /// A server on 127.0.0.1 that answers `Ping` on every authenticated connection.
    static func pingServer(secret: ClusterSecret, accepted: Counter) throws -> TCPListener {
        try TCPListener(bindHost: "127.0.0.1", advertisedHost: "127.0.0.1", secret: secret) { fd in
            accepted.increment()
            let hooks = Connection.Hooks(peerName: "client", onCall: { frame, connection in
                replier.post { connection.reply(to: frame.requestID, payload: frame.payload) }
            })
            Connection(fd: UniqueFileDescriptor(adopting: fd), hooks: hooks, carriesDescriptors: false).start()
        }
    }

    @Test func callRoundTripsOverTCP() async throws {
        let secret = try ClusterSecret.random()
        let accepted = Counter()
        let listener = try Self.pingServer(secret: secret, accepted: accepted)
        defer { listener.shutDown() }
        let connection = try Connection.dialTCP(listener.address, secret: secret, hooks: .init(peerName: "server"))
        connection.start()
        defer { connection.close() }
        for i in 0..<20 {
            let payload = Array("echo \(i)".utf8)
            let reply = try await connection.call(name: "echo", payload: payload, timeout: .seconds(10))
            #expect(reply.payload == payload)
        }
        #expect(accepted.value == 1 && listener.refused == 0)
        // Descriptors cannot cross hosts: refused with a message, the connection stays usable.
        let memory = try sharedText("x")
        let fd = try OwnedFD.duplicating(try #require(memory.sharedFileDescriptor))
        await #expect(throws: ClusterError.self) {
            _ = try await connection.call(name: "echo", payload: [], attachments: [fd], timeout: .seconds(10))
        }
        #expect(try await connection.call(name: "echo", payload: [1], timeout: .seconds(10)).payload == [1])
    }

    @Test func wrongSecretIsRefusedBothWays() async throws {
        let accepted = Counter()
        let listener = try Self.pingServer(secret: try ClusterSecret.random(), accepted: accepted)
        defer { listener.shutDown() }
        let wrong = try ClusterSecret.random()
        #expect(throws: ClusterError.self) {
            _ = try Connection.dialTCP(listener.address, secret: wrong, hooks: .init(peerName: "server"))
        }
        #expect(await eventually { listener.refused == 1 })
        #expect(accepted.value == 0)
    }

    @Test func garbagePeerIsRefusedWithoutTrapping() async throws {
        let accepted = Counter()
        let listener = try Self.pingServer(secret: try ClusterSecret.random(), accepted: accepted)
        defer { listener.shutDown() }
        // A peer that speaks another protocol: bytes of a frame-like shape, then EOF.
        for garbage in [Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8) + Array(repeating: 0x41, count: 80),
                        [UInt8](repeating: 0xff, count: 64), [0x01]] {
            let fd = try TCPSocket.connect(listener.address)
            _ = try? TCPSocket.readExactly(fd, 40)
            try TCPSocket.writeAll(fd, garbage)
            shutdown(fd, Int32(SHUT_WR))
            // The server hangs up: a read ends in EOF (or a reset), never a reply.
            var byte: UInt8 = 0
            let n = recv(fd, &byte, 1, 0)
            #expect(n <= 0)
            close(fd)
        }
        #expect(await eventually { listener.refused == 3 })
        #expect(accepted.value == 0)
        // A client that hears garbage from a "server" fails with a message, too.
        let (plain, port) = try TCPSocket.listen(host: "127.0.0.1")
        defer { close(plain) }
        let serverThread = Thread {
            let peer = accept(plain, nil, nil)
            if peer >= 0 {
                _ = try? TCPSocket.writeAll(peer, Array(repeating: 0x7a, count: 40))
                close(peer)
            }
        }
        serverThread.start()
        #expect(throws: ClusterError.self) {
            _ = try Connection.dialTCP(TCPAddress(host: "127.0.0.1", port: port), secret: try ClusterSecret.random(), hooks: .init(peerName: "x"))
        }
    }
}

final class Counter: Sendable {
    private let count = Atomic(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// A local cluster whose workers dial the driver over TCP (the transport `Cluster.ray` uses) behaves
/// as over Unix sockets: calls both ways, device reports, death of a killed worker named.
@Suite struct TCPControlPlaneClusterTests {
    @Test func workersOverTCPAnswerCallAndDie() async throws {
        let cluster = try makeCluster { options in
            options.controlPlane = .tcp(bindHost: "127.0.0.1", advertisedHost: "127.0.0.1")
            options.driverHandlers.on(Echo.self) { call, _ in "driver got '\(call.text)'" }
        }
        #expect(cluster.controlAddress?.host == "127.0.0.1")
        let pg = try cluster.placementGroup([ResourceBundle(gpu: 1)])
        try await pg.ready()
        let actor = try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config(),
                                            placement: .init(group: pg, bundleIndex: 0, deviceFraction: 0.5), name: "tcp-echo")
        #expect(try await actor.call(Echo("hi")).hasSuffix("hi"))
        #expect(try await actor.call(CallDriver(text: "up")) == "driver got 'up'")
        let report = try await actor.call(ReportDevice())
        #expect(report.uuid == pg.bundleDevices[0]?.uuid && report.deviceFraction == 0.5)
        let environ = (try? String(contentsOfFile: "/proc/\(report.pid)/environ", encoding: .utf8)) ?? ""
        #expect(environ.contains("COLOCATE_DRIVER_SOCKET=tcp://127.0.0.1:"))
        let pending = Task { try await actor.call(SleepFor(milliseconds: 60_000)) }
        actor.kill()
        do {
            _ = try await pending.value
            Issue.record("a call to a killed actor returned")
        } catch let error as ActorDiedError {
            #expect(error.actor == "tcp-echo")
        }
        await cluster.shutdown()
    }

    /// Peers on other hosts are reached over TCP: a peer address naming another host (and a socket
    /// path that does not exist here) still answers, through its TCP listener and the secret.
    @Test func peersOnOtherHostsAreReachedOverTCP() async throws {
        let cluster = try makeCluster { options in
            options.controlPlane = .tcp(bindHost: "127.0.0.1", advertisedHost: "127.0.0.1")
        }
        let a = try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config(), name: "a")
        let b = try await cluster.spawn(actorType: EchoActor.typeName, config: EchoActor.Config(), name: "b")
        let tcp = try #require(b.address.tcp)
        #expect(tcp.hasPrefix("tcp://127.0.0.1:") && b.address.host != nil)
        let elsewhere = ActorAddress(name: "b", path: "/nonexistent/b.sock", tcp: tcp, host: "another-host")
        #expect(try await a.call(CallPeer(address: elsewhere, text: "across")).hasSuffix("across"))
        // Without the TCP address, the same peer is unreachable: the call above did not use the path.
        await #expect(throws: RemoteError.self) {
            _ = try await a.call(CallPeer(address: ActorAddress(name: "b", path: "/nonexistent/other.sock"), text: "x"))
        }
        await cluster.shutdown()
    }
}

/// The control-plane all-reduce: every rank ends with the sum, in rank order, on one host (Unix
/// sockets) and with peers that count as other hosts (TCP).
@Suite struct ControlPlaneAllReduceTests {
    @Test(arguments: [false, true])
    func ranksSumOverTheControlPlane(acrossHosts: Bool) async throws {
        let cluster = try makeCluster { options in
            options.controlPlane = .tcp(bindHost: "127.0.0.1", advertisedHost: "127.0.0.1")
            // Each worker a "host" of its own: peers then dial each other over TCP.
            if acrossHosts { options.environment[WorkerEnvironment.hostIdentityKey] = "process" }
        }
        let group = try await cluster.spawnGroup(actorType: EchoActor.typeName, config: EchoActor.Config(),
                                                 placements: [nil, nil, nil], name: "dp")
        let hosts = Set(group.ranks.compactMap(\.address.host))
        #expect(hosts.count == (acrossHosts ? 3 : 1))
        let replies = try await group.callAll(AllReduceProbe(floats: 10_000, iterations: 3))
        for r in replies { #expect(r.first == 6 && r.count == 10_000) }   // 1 + 2 + 3
        await cluster.shutdown()
    }
}

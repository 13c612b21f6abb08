import CShims
@testable import Compute
import Foundation
import Testing

/// The exchange that hands shareable CUDA allocations to other processes, exercised with memfds: the
/// same sockets, SCM_RIGHTS and refusals, on any Linux machine.
@Suite("Descriptor exchange", .serialized)
struct DescriptorExchangeTests {
    /// A memfd holding `text`, as the exchange would lend a CUDA allocation's descriptor.
    private func memfd(holding text: String) throws -> (fd: Int32, identity: SharedMemoryIdentity) {
        let memory = try HostMemory.allocateShared(byteCount: 4096, device: .host)
        let fd = dup(memory.sharedFileDescriptor!)
        #expect(fd >= 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        return (fd, try SharedMemoryIdentity.of(fileDescriptor: fd))
    }

    private func contents(of fd: Int32) -> String {
        var bytes = [UInt8](repeating: 0, count: 64)
        let n = pread(fd, &bytes, bytes.count, 0)
        return String(decoding: bytes.prefix(max(0, n)).prefix { $0 != 0 }, as: UTF8.self)
    }

    @Test("A client that connects and says nothing does not stall another's fetch")
    func slowClientDoesNotStallOthers() throws {
        let exchange = try DescriptorExchange.shared()
        let (fd, _) = try memfd(holding: "weights v2")
        let reference = exchange.lend(UniqueFileDescriptor(adopting: fd))
        defer { exchange.withdraw(reference) }

        // Connected and silent: served one at a time, the exchange would wait its full 2 s read
        // timeout on this one before the fetch below is even read.
        let silent = reference.socketName.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { cshim_connect_abstract($0.baseAddress, $0.count, 1_000) }
        }
        try #require(silent >= 0)
        defer { close(silent) }
        // The listen queue is first come, first served: the exchange takes the silent one first.

        let fetched = try DescriptorExchange.fetch(reference, timeoutMilliseconds: 1_000)
        #expect(contents(of: fetched.rawValue) == "weights v2")
    }

    /// Root can run a process as another user; `setpriv` and `/usr/bin/python3` do it without help.
    static var canActAsAnotherUser: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")
    }

    @Test("A process of another user is refused before the exchange reads a byte from it",
          .enabled(if: canActAsAnotherUser, "needs root, /usr/bin/setpriv and /usr/bin/python3 to act as another user"))
    func otherUserIsRefusedBeforeReading() throws {
        let exchange = try DescriptorExchange.shared()
        let (fd, _) = try memfd(holding: "not for you")
        let reference = exchange.lend(UniqueFileDescriptor(adopting: fd))
        defer { exchange.withdraw(reference) }
        // As user nobody: connect, send nothing, read the answer. An exchange that read the request
        // first would wait for it (until its timeout) and close without a word: b''.
        let name = String(decoding: reference.socketName, as: UTF8.self)
        let script = """
            import socket
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect("\\0\(name)")
            print(s.recv(1).hex() or "closed")
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-c", script]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let answer = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(answer.trimmingCharacters(in: .whitespacesAndNewlines) == "02", "the exchange answered \(answer)")  // otherUser
    }

    @Test("A lent descriptor is fetched as a new descriptor of the same object")
    func fetch() throws {
        let exchange = try DescriptorExchange.shared()
        let (fd, identity) = try memfd(holding: "weights v1")
        let reference = exchange.lend(UniqueFileDescriptor(adopting: fd))
        defer { exchange.withdraw(reference) }

        let fetched = try DescriptorExchange.fetch(reference)  // closed at the end of the test
        #expect(fetched.rawValue != fd)
        let seen = try SharedMemoryIdentity.of(fileDescriptor: fetched.rawValue)
        #expect(seen.inode == identity.inode && seen.device == identity.device)
        #expect(contents(of: fetched.rawValue) == "weights v1")
        #expect(fcntl(fetched.rawValue, F_GETFD) & FD_CLOEXEC != 0)  // never leaks into spawned workers
        #expect(try DescriptorReference(bytes: reference.bytes) == reference)
    }

    @Test("A wrong secret, a withdrawn descriptor and an exited lender are refused with a reason")
    func refusals() throws {
        let exchange = try DescriptorExchange.shared()
        let (fd, _) = try memfd(holding: "x")
        let reference = exchange.lend(UniqueFileDescriptor(adopting: fd))
        let lent = exchange.lentCount

        var forged = reference
        forged.secret[1] ^= 1
        let wrong = #expect(throws: ComputeError.self) { _ = try DescriptorExchange.fetch(forged) }
        #expect(wrong?.message.contains("no longer shares") == true)

        exchange.withdraw(reference)
        #expect(exchange.lentCount == lent - 1)
        let withdrawn = #expect(throws: ComputeError.self) { _ = try DescriptorExchange.fetch(reference) }
        #expect(withdrawn?.message.contains("no longer shares") == true)

        let deadPID = try exitedProcessID()
        var gone = reference
        gone.pid = deadPID
        let exited = #expect(throws: ComputeError.self) { _ = try DescriptorExchange.fetch(gone) }
        #expect(exited?.message.contains("process \(deadPID) has exited") == true)

        #expect(throws: ComputeError.self) { try DescriptorReference(bytes: Array(reference.bytes.prefix(20))) }
    }
}

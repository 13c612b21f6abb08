import Compute
import Foundation
import Testing

@Suite("Memory handles")
struct CUDAMemoryHandleTests {
    static let handle = MemoryHandle(deviceUUID: "GPU-d6a04513-23cb-b6a9-fd68-5923daa696ea", kind: .cudaIPC, byteCount: 4096,
                                     offset: 256, opaque: Array(0..<64), ownerPID: getpid())

    @Test("A handle survives JSON, the control plane's encoding")
    func json() throws {
        let data = try JSONEncoder().encode(Self.handle)
        #expect(try JSONDecoder().decode(MemoryHandle.self, from: data) == Self.handle)
        #expect(String(decoding: data, as: UTF8.self).contains("\"cudaIPC\""))
    }

    @Test("A live owner passes; an exited one is refused with a clear message")
    func owner() throws {
        try Self.handle.checkOwnerAlive()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        var dead = Self.handle
        dead.ownerPID = process.processIdentifier
        #expect(!dead.ownerIsAlive)
        let error = #expect(throws: ComputeError.self) { try dead.checkOwnerAlive() }
        #expect(error?.message.contains("process \(process.processIdentifier)") == true)
        #expect(error?.message.contains("has exited") == true)
    }

    @Test("Slices stay inside the handle")
    func slices() throws {
        let slice = try Self.handle.slice(offset: 1024, byteCount: 2048)
        #expect(slice.offset == 1280 && slice.byteCount == 2048)
        #expect(throws: ComputeError.self) { try Self.handle.slice(offset: 3000, byteCount: 2000) }
    }
}

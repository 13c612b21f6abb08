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
        let exited = try exitedProcessID()
        var dead = Self.handle
        dead.ownerPID = exited
        #expect(!dead.ownerIsAlive)
        let error = #expect(throws: ComputeError.self) { try dead.checkOwnerAlive() }
        #expect(error?.message.contains("process \(exited)") == true)
        #expect(error?.message.contains("has exited") == true)
    }

    @Test("Slices stay inside the handle")
    func slices() throws {
        let slice = try Self.handle.slice(offset: 1024, byteCount: 2048)
        #expect(slice.offset == 1280 && slice.byteCount == 2048)
        #expect(throws: ComputeError.self) { try Self.handle.slice(offset: 3000, byteCount: 2000) }
    }
}

@Suite("CUDA memory sharing choice")
struct CUDAMemorySharingTests {
    @Test("File descriptors where supported, CUDA IPC otherwise; the environment overrides; bad values are refused")
    func choice() throws {
        #expect(try CUDAMemorySharing.preferred(setting: nil, fileDescriptorsSupported: true) == .fileDescriptor)
        #expect(try CUDAMemorySharing.preferred(setting: "", fileDescriptorsSupported: false) == .ipc)
        #expect(try CUDAMemorySharing.preferred(setting: "ipc", fileDescriptorsSupported: true) == .ipc)
        #expect(try CUDAMemorySharing.preferred(setting: "fd", fileDescriptorsSupported: true) == .fileDescriptor)
        let unsupported = #expect(throws: ComputeError.self) { try CUDAMemorySharing.preferred(setting: "fd", fileDescriptorsSupported: false) }
        #expect(unsupported?.message.contains("use ipc") == true)
        let bad = #expect(throws: ComputeError.self) { try CUDAMemorySharing.preferred(setting: "vmm", fileDescriptorsSupported: true) }
        #expect(bad?.message.contains("must be fd or ipc") == true)
    }
}

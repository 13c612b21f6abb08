import Compute
import Foundation
import Testing
import WeightSync

/// The gate that keeps a push out of an engine rank's generation, across two mappings of its shared
/// memory (as the engine rank and the trainer hold it).
@Suite("Weight write gate")
struct WeightWriteGateTests {
    @Test("Generation and push exclude each other; a timed-out wait names the holder")
    func exclusion() throws {
        let engine = try WeightWriteGate()
        let trainer = try WeightWriteGate(opening: try engine.handle())
        try engine.acquire(.generation, timeout: .seconds(5), what: "generate")
        #expect(trainer.holder == .generation)
        let busy = #expect(throws: WeightSyncError.self) {
            try trainer.acquire(.push, timeout: .milliseconds(20), what: "cannot push into engine rank 0")
        }
        #expect(busy?.message.contains("cannot push into engine rank 0: the engine rank is generating") == true)
        engine.release()

        try trainer.acquire(.push, timeout: .seconds(5), what: "push")
        let writing = #expect(throws: WeightSyncError.self) { try engine.acquire(.generation, timeout: .milliseconds(20), what: "generate") }
        #expect(writing?.message.contains("being written by a trainer (pid \(getpid()))") == true)
        trainer.release()
        #expect(engine.holder == nil)
    }

    @Test("A waiter gets the gate when the holder lets go")
    func waiting() throws {
        let engine = try WeightWriteGate()
        let trainer = try WeightWriteGate(opening: try engine.handle())
        try engine.acquire(.generation, timeout: .seconds(5), what: "generate")
        let releaser = Thread { usleep(30_000); engine.release() }
        releaser.start()
        try trainer.acquire(.push, timeout: .seconds(30), what: "push")  // returns once released, long before 30 s
        #expect(trainer.holder == .push)
        trainer.release()
    }

    @Test("A holder that died is taken over instead of waited for")
    func deadHolder() throws {
        let engine = try WeightWriteGate()
        let handle = try engine.handle()
        try engine.acquire(.push, timeout: .seconds(5), what: "push")
        // Make the holder a process that has exited, as if the trainer died mid-push.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        let fd = try SharedMemoryIdentity(bytes: handle.opaque).open()
        let raw = try HostMemory.map(fileDescriptor: fd, byteCount: handle.byteCount, device: .host, keepDescriptor: true)
        raw.baseAddress.storeBytes(of: UInt32(bitPattern: process.processIdentifier), toByteOffset: 4, as: UInt32.self)

        try engine.acquire(.generation, timeout: .seconds(5), what: "generate")
        #expect(engine.holder == .generation)
        engine.release()
    }
}

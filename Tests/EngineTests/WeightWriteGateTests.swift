import Compute
import Foundation
import Testing
@testable import WeightSync

/// The gate that keeps a weight write out of an engine rank's generation, across two mappings of its
/// shared memory (as the engine rank and the trainer hold it).
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

    /// The gate's words, mapped a second time, to stage what a dead process left behind.
    private func rawWords(of gate: WeightWriteGate) throws -> HostMemory {
        let handle = try gate.handle()
        return try HostMemory.map(owning: try SharedMemoryIdentity(bytes: handle.opaque).open(), byteCount: handle.byteCount, device: .host)
    }

    private func exitedPID() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }

    @Test("A holder that died is taken over instead of waited for")
    func deadHolder() throws {
        let engine = try WeightWriteGate()
        let raw = try rawWords(of: engine)
        // The holder's kind and pid are one word: a trainer that died mid-push left exactly this.
        raw.baseAddress.storeBytes(of: WeightWriteGate.encode(.push, pid: try exitedPID()), as: UInt32.self)
        #expect(engine.holder == .push)
        try engine.acquire(.generation, timeout: .seconds(5), what: "generate")
        #expect(engine.holder == .generation)
        engine.release()
    }

    @Test("A holder that died between taking the gate and naming itself does not wedge it")
    func holderWithoutPID() throws {
        let engine = try WeightWriteGate()
        let raw = try rawWords(of: engine)
        // What the old two-word gate left when its holder died between the compare-and-swap and the
        // pid store: a holder and no pid. With kind and pid in one word this state has no live owner.
        raw.baseAddress.storeBytes(of: WeightWriteGate.Holder.push.rawValue << 24, as: UInt32.self)
        try engine.acquire(.generation, timeout: .seconds(5), what: "generate")
        #expect(engine.holder == .generation)
        engine.release()
    }

    @Test("A write that began and did not finish leaves the weights incomplete until a complete one")
    func incompleteWrite() throws {
        let engine = try WeightWriteGate()
        let trainer = try WeightWriteGate(opening: try engine.handle())
        #expect(engine.version == 0 && engine.incompleteWriterPID == nil)
        try engine.requireCompleteWeights("generate")

        // A trainer that dies mid-push: gate held, weights marked, neither ever cleared by it.
        let raw = try rawWords(of: engine)
        let dead = try exitedPID()
        raw.baseAddress.storeBytes(of: WeightWriteGate.encode(.push, pid: dead), as: UInt32.self)
        raw.baseAddress.storeBytes(of: UInt32(bitPattern: dead), toByteOffset: 4, as: UInt32.self)

        // The engine takes the gate over, and refuses to generate on the torn weights.
        try engine.acquire(.generation, timeout: .seconds(5), what: "generate")
        let refusal = #expect(throws: WeightSyncError.self) { try engine.requireCompleteWeights("cannot generate on engine rank 0") }
        #expect(refusal?.message.contains("incomplete") == true && refusal?.message.contains("died while writing (pid \(dead))") == true)
        engine.release()

        // A write refused before its first byte (all-or-nothing) changes nothing; a complete one makes
        // them whole, as a new version.
        #expect(throws: WeightSyncError.self) {
            try trainer.writing(timeout: .seconds(5), what: "push") { throw WeightSyncError("refused: shapes differ") }
        }
        #expect(engine.incompleteWriterPID == dead && engine.version == 0)
        try trainer.writing(timeout: .seconds(5), what: "push") {}
        #expect(engine.incompleteWriterPID == nil && engine.version == 1)
        try engine.requireCompleteWeights("generate")
        #expect(engine.holder == nil)
    }
}

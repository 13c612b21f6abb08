import Compute
import Foundation
import Testing

@testable import Collectives

/// The CPU tensor-parallel all-reduce, with ranks on threads of one process sharing one segment.
@Suite struct SharedMemoryAllReduceTests {
    func ranks(_ world: Int, slotFloats: Int) throws -> [SharedMemoryAllReduce] {
        try ranksAndSegment(world, slotFloats: slotFloats).ranks
    }

    func ranksAndSegment(_ world: Int, slotFloats: Int) throws -> (ranks: [SharedMemoryAllReduce], segment: HostMemory) {
        let segment = try SharedMemoryAllReduce.createSegment(worldSize: world, slotFloats: slotFloats)
        return ((0..<world).map { SharedMemoryAllReduce(segment: segment, rank: $0, worldSize: world, slotFloats: slotFloats) }, segment)
    }

    /// Waits until `count` ranks of `segment` wait at its barrier (true), or 30 s pass (false): the event
    /// a test acts on, bounded so that a bug fails the test instead of hanging it.
    func waitForRanksWaiting(_ count: Int, in segment: HostMemory) -> Bool {
        let deadline = ContinuousClock.now + .seconds(30)
        while SharedMemoryAllReduce.ranksWaiting(in: segment) != count {
            guard ContinuousClock.now < deadline else { return false }
            usleep(200)
        }
        return true
    }

    @Test func sumsAcrossRanksInChunksAndEveryRankGetsTheSameBits() throws {
        let world = 3, count = 1000
        let comms = try ranks(world, slotFloats: 64)  // forces 16 chunks
        let inputs: [[Float]] = (0..<world).map { r in
            (0..<count).map { (i: Int) -> Float in Float(r + 1) * 0.1 + Float(i) * 0.001 }
        }
        let tensors = inputs.map { Tensor($0, shape: [count]) }
        let errors = ErrorBox()
        // One thread per rank (a pool with fewer threads than ranks would leave the barrier waiting).
        let group = DispatchGroup()
        for r in 0..<world {
            group.enter()
            Thread {
                do { try comms[r](tensors[r]) } catch { errors.add(error) }
                group.leave()
            }.start()
        }
        #expect(group.wait(timeout: .now() + 30) == .success)
        #expect(errors.all.isEmpty)
        let expected: [Float] = (0..<count).map { (i: Int) -> Float in inputs[0][i] + inputs[1][i] + inputs[2][i] }
        for t in tensors {
            #expect(zip(t.floats(), expected).allSatisfy { abs($0 - $1) < 1e-5 })
            #expect(t.floats() == tensors[0].floats(), "ranks must agree bit for bit")
        }
    }

    @Test func aPeerThatAbortsReleasesTheWaitingRankWithAnError() throws {
        let (comms, segment) = try ranksAndSegment(2, slotFloats: 16)
        let waiting = Tensor([1, 2, 3], shape: [3])
        let errors = ErrorBox()
        let done = DispatchSemaphore(value: 0)
        Thread {
            do { try comms[0](waiting) } catch { errors.add(error) }
            done.signal()
        }.start()
        // Rank 0 waits at the barrier before its peer aborts: the waiting path is what is tested.
        try #require(waitForRanksWaiting(1, in: segment), "rank 0 never reached the barrier")
        comms[1].abort()
        #expect(done.wait(timeout: .now() + 10) == .success, "rank 0 must not wait forever")
        #expect(errors.all.map { String(describing: $0) }.first?.contains("rank 1 failed") == true)
        // The group stays failed: a later all-reduce refuses at once.
        #expect(throws: ComputeError.self) { try comms[1](Tensor([1], shape: [1])) }
    }

    @Test func theDriverCanAbortTheGroupForARankThatFailedAlone() throws {
        let segment = try SharedMemoryAllReduce.createSegment(worldSize: 2, slotFloats: 16)
        let rank0 = SharedMemoryAllReduce(segment: segment, rank: 0, worldSize: 2, slotFloats: 16)
        _ = SharedMemoryAllReduce(segment: segment, rank: 1, worldSize: 2, slotFloats: 16)  // alive, never arrives
        let errors = ErrorBox()
        let done = DispatchSemaphore(value: 0)
        Thread {
            do { try rank0(Tensor([1, 2, 3], shape: [3])) } catch { errors.add(error) }
            done.signal()
        }.start()
        try #require(waitForRanksWaiting(1, in: segment), "rank 0 never reached the barrier")
        SharedMemoryAllReduce.abort(segment: segment, failedRank: 1)
        #expect(done.wait(timeout: .now() + 10) == .success, "rank 0 must not wait forever")
        #expect(errors.all.map { String(describing: $0) }.first?.contains("rank 1 failed") == true, "\(errors.all)")
    }
}

final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [any Error] = []
    func add(_ e: any Error) { lock.lock(); errors.append(e); lock.unlock() }
    var all: [any Error] { lock.lock(); defer { lock.unlock() }; return errors }
}

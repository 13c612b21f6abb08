import Compute
import Dispatch
import Synchronization
import Testing

@Suite("Parallel")
struct ParallelTests {
    /// Runs `forEach` and counts how often each index was visited.
    static func visits(count: Int) -> [Int] {
        let counts = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: max(count, 1))
        for i in 0..<count { (counts + i).initialize(to: Atomic(0)) }
        defer { counts.deallocate() }
        Parallel.forEach(count: count) { i in
            counts[i].wrappingAdd(1, ordering: .relaxed)
        }
        return (0..<count).map { counts[$0].load(ordering: .relaxed) }
    }

    @Test("every index runs exactly once", arguments: [0, 1, 2, 7, 1000])
    func everyIndexOnce(count: Int) {
        #expect(Self.visits(count: count) == [Int](repeating: 1, count: count))
    }

    @Test("calls from several threads at once, and nested calls, all complete correctly")
    func concurrentAndNestedCallers() {
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 6) { caller in
            for round in 0..<50 {
                let count = 1 + (caller * 7 + round) % 40
                if Self.visits(count: count) != [Int](repeating: 1, count: count) {
                    failures.wrappingAdd(1, ordering: .relaxed)
                }
            }
        }
        // Nested: the inner loops run on whatever thread the outer index landed on.
        let total = Atomic<Int>(0)
        Parallel.forEach(count: 8) { _ in
            Parallel.forEach(count: 10) { j in total.wrappingAdd(j, ordering: .relaxed) }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
        #expect(total.load(ordering: .relaxed) == 8 * 45)
    }

    @Test("lanes are below width and not shared by calls running at the same time")
    func lanesAreExclusive() {
        let width = Parallel.width
        let inUse = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: width)
        for i in 0..<width { (inUse + i).initialize(to: Atomic(0)) }
        defer { inUse.deallocate() }
        let violations = Atomic<Int>(0), sink = Atomic<Int>(0)
        Parallel.forEachWithLane(count: 200) { i, lane in
            guard lane >= 0 && lane < width else {
                violations.wrappingAdd(1, ordering: .relaxed)
                return
            }
            if inUse[lane].wrappingAdd(1, ordering: .acquiringAndReleasing).oldValue != 0 {
                violations.wrappingAdd(1, ordering: .relaxed)
            }
            var x = i
            for _ in 0..<2000 { x = x &* 31 &+ 7 }  // long enough for the threads to overlap
            sink.store(x, ordering: .relaxed)
            inUse[lane].wrappingSubtract(1, ordering: .acquiringAndReleasing)
        }
        #expect(violations.load(ordering: .relaxed) == 0)
    }

    @Test("chunks tile the range without gaps or overlaps", arguments: [(0, 5), (1, 5), (10, 3), (1000, 7), (100_000, 100)])
    func chunksTileTheRange(total: Int, grain: Int) {
        let covered = Mutex<[Range<Int>]>([])
        Parallel.forEachChunk(total: total, grain: grain) { range in
            covered.withLock { $0.append(range) }
        }
        let ranges = covered.withLock { $0 }.sorted { $0.lowerBound < $1.lowerBound }
        var next = 0
        for r in ranges {
            #expect(r.lowerBound == next && !r.isEmpty)
            next = r.upperBound
        }
        #expect(next == total)
        #expect(ranges.count <= max(1, 4 * Parallel.width))
    }
}

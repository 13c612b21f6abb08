/// Fork-join parallelism for the CPU kernels: run `body(i)` for `i in 0..<count` on the calling thread
/// and the pool's worker threads, and return when every call has returned.
///
/// The pool is per process, started on first use, with `width - 1` workers (the caller is the last
/// thread). `width` is the number of online processors, or `COLOCATE_CPU_THREADS` when set — set it
/// when several processes share the cores, so that their pools do not oversubscribe them.
///
/// Safe from any thread and from several threads at once: one caller at a time gets the workers, the
/// others (and nested calls from inside a body) run their indices serially on their own thread. Indices
/// are claimed dynamically, so uneven tasks balance themselves; the caller decides the grain.
public enum Parallel {
    /// Threads a `forEach` can use, counting the caller.
    public static var width: Int { WorkerPool.shared.width }

    /// Calls `body(i)` for every `i in 0..<count`, concurrently. `body` must be safe to call
    /// concurrently for distinct indices; the order of calls is unspecified.
    public static func forEach(count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || WorkerPool.shared.width == 1 {
            for i in 0..<count { body(i) }
            return
        }
        WorkerPool.shared.run(count: count) { i, _ in body(i) }
    }

    /// `forEach` that also tells each call its lane: an integer below `width`, distinct among the
    /// calls running at the same time within this `forEach`. Use it to index per-thread scratch
    /// memory allocated once for the whole loop.
    public static func forEachWithLane(count: Int, _ body: (_ index: Int, _ lane: Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || WorkerPool.shared.width == 1 {
            for i in 0..<count { body(i, 0) }
            return
        }
        WorkerPool.shared.run(count: count, body)
    }

    /// Splits `0..<total` into contiguous chunks of at least `grain` elements (at most `4 × width`
    /// chunks, or one chunk when `total < 2 × grain`) and calls `body` on each, concurrently.
    public static func forEachChunk(total: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        if total <= 0 { return }
        let chunks = chunkCount(total: total, grain: grain)
        if chunks == 1 {
            body(0..<total)
            return
        }
        forEach(count: chunks) { c in
            body(total * c / chunks ..< total * (c + 1) / chunks)
        }
    }

    /// How many chunks `forEachChunk` uses for `total` elements at `grain`.
    public static func chunkCount(total: Int, grain: Int) -> Int {
        let w = width
        if w == 1 { return 1 }
        return max(1, min(total / max(grain, 1), 4 * w))
    }
}

import CCUDA
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// GPU time per op name, measured with a pair of CUDA events around each op the backend queues, and the
/// host's time: inside the op (checks, kernel lookup, launch) and before it since the previous op ended
/// (the model's code and allocations between ops, charged to the op that follows). Turned on by
/// `COLOCATE_PROFILE_OPS=1` (or ``CUDABackend/profilesOps``), read with ``CUDABackend/opProfile()``.
/// Steps recorded as CUDA graphs are not profiled (events cannot be timed inside a capture), so a
/// profiled generator runs eagerly; the host times then say what an eager step costs the CPU.
final class CUDAOpProfile {
    private var pending: [(name: String, start: CUevent, end: CUevent)] = []
    private var spare: [CUevent] = []
    private(set) var totals: [String: (seconds: Double, count: Int)] = [:]
    /// Host seconds by op name: inside the op, and between the previous op's end and this op's start.
    private(set) var hostInside: [String: Double] = [:]
    private(set) var hostBefore: [String: Double] = [:]
    private var previousEnd: Double?

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    func host(_ name: String, start: Double, end: Double) {
        hostInside[name, default: 0] += end - start
        // A gap longer than a second is a pause between runs, not host work of a step.
        if let previousEnd, start - previousEnd < 1 { hostBefore[name, default: 0] += start - previousEnd }
        previousEnd = end
    }

    func event(_ driver: CUDADriver) throws -> CUevent {
        if let e = spare.popLast() { return e }
        var e: CUevent?
        try CUDAError.check(driver.cuEventCreate(&e, CU_EVENT_DEFAULT), "cuEventCreate")
        return e!
    }

    func record(_ name: String, start: CUevent, end: CUevent) { pending.append((name, start, end)) }

    /// Adds the pending ops' times to the totals (after the stream has finished them).
    func collect(_ driver: CUDADriver) {
        for (name, start, end) in pending {
            var ms: Float = 0
            if driver.cuEventElapsedTime(&ms, start, end) == CUDA_SUCCESS {
                let t = totals[name] ?? (0, 0)
                totals[name] = (t.seconds + Double(ms) / 1000, t.count + 1)
            }
            spare += [start, end]
        }
        pending.removeAll()
    }

    func reset() {
        totals = [:]
        hostInside = [:]
        hostBefore = [:]
        previousEnd = nil
    }
}

extension CUDABackend {
    /// Whether each op is timed on the GPU (see ``CUDAOpProfile``). Off unless `COLOCATE_PROFILE_OPS=1`.
    public var profilesOps: Bool {
        get { profile != nil }
        set {
            try? cudaDevice.sync {
                if newValue, profile == nil { profile = CUDAOpProfile() }
                if !newValue { profile = nil }
            }
        }
    }

    /// One op name's totals in ``opProfile()``.
    public struct OpTimes: Sendable {
        public var op: String
        /// GPU seconds (CUDA events around the op).
        public var seconds: Double
        public var count: Int
        /// Host seconds inside the op, and before it since the previous op ended.
        public var hostInside: Double
        public var hostBefore: Double
    }

    /// GPU and host seconds and op counts by op name since the last call (waits for the queued ops),
    /// largest GPU time first.
    public func opProfile() throws -> [OpTimes] {
        try cudaDevice.sync {
            guard let profile else { return [] }
            try stream.synchronize()
            profile.collect(driver)
            defer { profile.reset() }
            return profile.totals.map {
                OpTimes(op: $0.key, seconds: $0.value.seconds, count: $0.value.count, hostInside: profile.hostInside[$0.key] ?? 0,
                        hostBefore: profile.hostBefore[$0.key] ?? 0)
            }.sorted { $0.seconds > $1.seconds }
        }
    }

    /// Runs `body` between two events when profiling (not during a graph capture).
    func timed(_ op: String, _ body: () throws -> Void) throws {
        guard let profile, !trainingState.recording else { return try body() }
        let hostStart = CUDAOpProfile.now()
        let start = try profile.event(driver), end = try profile.event(driver)
        try CUDAError.check(driver.cuEventRecord(start, stream.handle), "cuEventRecord")
        try body()
        try CUDAError.check(driver.cuEventRecord(end, stream.handle), "cuEventRecord")
        profile.record(op, start: start, end: end)
        profile.host(op, start: hostStart, end: CUDAOpProfile.now())
    }
}

import CCUDA

/// GPU time per op name, measured with a pair of CUDA events around each op the backend queues: turned
/// on by `COLOCATE_PROFILE_OPS=1` (or ``CUDABackend/profilesOps``), read with ``CUDABackend/opProfile()``.
/// Steps recorded as CUDA graphs are not profiled (events cannot be timed inside a capture), so a
/// profiled generator runs eagerly.
final class CUDAOpProfile {
    private var pending: [(name: String, start: CUevent, end: CUevent)] = []
    private var spare: [CUevent] = []
    private(set) var totals: [String: (seconds: Double, count: Int)] = [:]

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

    func reset() { totals = [:] }
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

    /// GPU seconds and op counts by op name since the last call (waits for the queued ops), largest first.
    public func opProfile() throws -> [(op: String, seconds: Double, count: Int)] {
        try cudaDevice.sync {
            guard let profile else { return [] }
            try stream.synchronize()
            profile.collect(driver)
            defer { profile.reset() }
            return profile.totals.map { ($0.key, $0.value.seconds, $0.value.count) }.sorted { $0.seconds > $1.seconds }
        }
    }

    /// Runs `body` between two events when profiling (not during a graph capture).
    func timed(_ op: String, _ body: () throws -> Void) throws {
        guard let profile, !trainingState.recording else { return try body() }
        let start = try profile.event(driver), end = try profile.event(driver)
        try CUDAError.check(driver.cuEventRecord(start, stream.handle), "cuEventRecord")
        try body()
        try CUDAError.check(driver.cuEventRecord(end, stream.handle), "cuEventRecord")
        profile.record(op, start: start, end: end)
    }
}

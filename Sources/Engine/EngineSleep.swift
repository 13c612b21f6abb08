import Cluster
import Compute
import Foundation
import Synchronization
import WeightSync

/// What a wake restores (vLLM's `wake_up(tags=[...])`): the weights' memory, the KV cache, or both.
public enum WakeTag: String, Sendable, Codable, CaseIterable {
    case weights
    case kvCache = "kv_cache"
}

/// Releases a rank's memory while it is not generating (vLLM's `sleep(level)`): level 1 the KV cache,
/// level 2 the weights too. Addresses stay reserved, so a wake maps new memory where the old was.
public struct SleepRank: RemoteCall {
    public typealias Reply = MemoryReport
    public static let name = "engine.sleep"
    public var level: Int
    public init(level: Int) { self.level = level }
}

/// Restores what `tags` name after a sleep. Woken weights hold nothing until the next weight sync
/// (push or pull); generating before it is refused.
public struct WakeRank: RemoteCall {
    public typealias Reply = MemoryReport
    public static let name = "engine.wake"
    public var tags: [WakeTag]
    public init(tags: [WakeTag]) { self.tags = tags }
}

/// Whether a rank can generate now (awake, with weights since a level-2 sleep); the reason when not.
/// The driver asks every rank of a tensor-parallel engine before generating, so that a refusal is
/// everyone's: a rank refusing alone would leave its peers waiting in an all-reduce.
public struct CheckGenerationReady: RemoteCall {
    /// Why a rank cannot generate: the `EngineError` it would throw.
    public struct Refusal: Codable, Sendable, Equatable {
        public var code: String
        public var message: String
    }
    public typealias Reply = Refusal?
    public static let name = "engine.checkGenerationReady"
    public init() {}
}

/// Memory of one rank around a sleep or wake. On a GPU, the device's free memory before and after
/// (`cuMemGetInfo`: what every process on the GPU sees); on a virtual CPU device, the bytes of the
/// rank's weights and KV cache backed by pages (`mincore`).
public struct MemoryReport: Codable, Sendable, Equatable {
    public var rank: Int
    public var deviceFreeBefore: Int?
    public var deviceFreeAfter: Int?
    public var residentBefore: Int
    public var residentAfter: Int
    public var seconds: Double
    /// Bytes given back (positive) or taken (negative) by the call, by whichever figure the device has.
    public var bytesReleased: Int {
        if let before = deviceFreeBefore, let after = deviceFreeAfter { return after - before }
        return residentBefore - residentAfter
    }
}

/// A rank's sleep state. `weightsNeedSync` is set when the weights' memory was released: whatever it
/// holds after a wake is not the model, so generation is refused until a weight sync writes it.
struct SleepState: Sendable {
    var kvCacheAsleep = false
    var weightsAsleep = false
    var weightsNeedSync = false
    /// The gate's count of completed pushes when the weights' memory last changed hands: a push
    /// completed after it wrote the memory the rank now maps.
    var pushesAtRelease = 0
}

extension EngineWorkerState {
    /// Throws unless the rank can generate now: awake, with weights written since a level-2 sleep.
    func checkAwake() throws {
        let s = sleep.withLock { $0 }
        if s.kvCacheAsleep || s.weightsAsleep {
            let what = [s.weightsAsleep ? "weights" : nil, s.kvCacheAsleep ? "KV cache" : nil].compactMap { $0 }.joined(separator: " and ")
            throw EngineError(.asleep, "engine rank \(rank) is asleep (its \(what) released): call wakeUp before generating")
        }
        if s.weightsNeedSync && writeGate.version != s.pushesAtRelease {
            sleep.withLock { $0.weightsNeedSync = false }
        } else if s.weightsNeedSync {
            throw EngineError(.weightsNotLoaded, "engine rank \(rank) woke from a level-2 sleep and has no weights yet: sync weights (push or pull) before generating")
        }
    }

    /// A weight sync wrote every weight of this rank (pull path): a level-2 wake is then complete.
    func noteWeightsWritten() {
        sleep.withLock { $0.weightsNeedSync = false }
    }

    /// Throws while the weights' memory is released: a pull would write into memory that is not there.
    func checkWeightsAwake() throws {
        if sleep.withLock({ $0.weightsAsleep }) {
            throw EngineError(.asleep, "engine rank \(rank) is asleep at level 2: wake its weights (wakeUp(tags: [.weights])) before loading weights")
        }
    }

    func sleep(level: Int) throws -> MemoryReport {
        guard level == 1 || level == 2 else { throw EngineError(.invalidArgument, "sleep level must be 1 or 2, not \(level)") }
        let start = ContinuousClock.now
        return try measuringMemory(start: start) {
            try writeGate.holding(.generation, timeout: .seconds(60), what: "cannot put engine rank \(rank) to sleep") {
                try perform {
                    if !sleep.withLock({ $0.kvCacheAsleep }) {
                        try release(generator.cache.storage)
                        sleep.withLock { $0.kvCacheAsleep = true }
                    }
                    if level == 2 && !sleep.withLock({ $0.weightsAsleep }) {
                        try releaseWeights()
                        sleep.withLock {
                            $0.weightsAsleep = true
                            $0.weightsNeedSync = true
                            // Host memory stays the same pages of one memfd: a push while asleep lands.
                            $0.pushesAtRelease = writeGate.version
                        }
                    }
                }
            }
        }
    }

    func wake(tags: [WakeTag]) throws -> MemoryReport {
        let start = ContinuousClock.now
        let tags = Set(tags.isEmpty ? WakeTag.allCases : tags)
        return try measuringMemory(start: start) {
            try writeGate.holding(.generation, timeout: .seconds(60), what: "cannot wake engine rank \(rank)") {
                try perform {
                    if tags.contains(.weights) && sleep.withLock({ $0.weightsAsleep }) {
                        if try restoreWeights() {
                            // New device memory: trainers must map it again, and only pushes from now on count.
                            writeGate.advanceMemoryEpoch()
                            sleep.withLock { $0.pushesAtRelease = writeGate.version }
                        }
                        sleep.withLock { $0.weightsAsleep = false }
                    }
                    if tags.contains(.kvCache) && sleep.withLock({ $0.kvCacheAsleep }) {
                        try restore(generator.cache.storage, zeroed: true)
                        sleep.withLock { $0.kvCacheAsleep = false }
                    }
                }
            }
        }
    }

    private func perform(_ body: () throws -> Void) throws {
        try backend.perform { try body() }
    }

    private func release(_ t: Tensor) throws {
        if let memory = t.memory {
            try memory.releasePages()
        } else if let buffer = t.deviceStorage as? CUDABuffer {
            try buffer.releasePhysicalMemory()
        }
    }

    private func restore(_ t: Tensor, zeroed: Bool) throws {
        // Host pages come back zeroed on first touch; device memory must be mapped again.
        if let buffer = t.deviceStorage as? CUDABuffer {
            try buffer.restorePhysicalMemory()
            if zeroed { try buffer.fill(byte: 0) }
        }
    }

    private func releaseWeights() throws {
        switch flatWeights {
        case let host as SharedWeightBuffer: try host.releaseMemory()
        case let gpu as CUDAWeightBuffer: try gpu.releaseMemory()
        default: throw EngineError("engine rank \(rank): weights of \(type(of: flatWeights)) cannot be released")
        }
    }

    /// Maps the weights' memory again; true when it is new memory (GPU), false when the pages were
    /// never unmapped (shared memory of a CPU device).
    private func restoreWeights() throws -> Bool {
        guard let gpu = flatWeights as? CUDAWeightBuffer else { return false }
        try gpu.restoreMemory()
        return true
    }

    private func measuringMemory(start: ContinuousClock.Instant, _ body: () throws -> Void) throws -> MemoryReport {
        let cuda = backend as? CUDABackend
        let freeBefore = try cuda.map { try $0.cudaDevice.memoryInfo().free }
        let residentBefore = residentBytes()
        try body()
        let freeAfter = try cuda.map { try $0.cudaDevice.memoryInfo().free }
        return MemoryReport(rank: rank, deviceFreeBefore: freeBefore, deviceFreeAfter: freeAfter,
                            residentBefore: residentBefore, residentAfter: residentBytes(),
                            seconds: (ContinuousClock.now - start).inSeconds)
    }

    /// Host bytes of the weights and KV cache backed by pages (CPU devices; 0 on GPUs).
    private func residentBytes() -> Int {
        let weights = (flatWeights as? SharedWeightBuffer)?.memory.residentBytes() ?? 0
        return weights + (generator.cache.storage.memory?.residentBytes() ?? 0)
    }
}

/// One report per rank of a sleep or wake, in rank order.
public struct EngineMemoryReport: Sendable {
    public var ranks: [MemoryReport]
    /// Bytes given back over all ranks (negative for a wake).
    public var bytesReleased: Int { ranks.reduce(0) { $0 + $1.bytesReleased } }
    public var seconds: Double { ranks.map(\.seconds).max() ?? 0 }
}

extension LLM {
    /// Releases the engine's memory on every rank (vLLM's `llm.sleep(level)`): level 1 the KV cache,
    /// level 2 the weights as well (the next weight sync must restore them). Generation is refused
    /// until ``wakeUp(tags:)``.
    @discardableResult
    public func sleep(level: Int = 1) async throws -> EngineMemoryReport {
        EngineMemoryReport(ranks: try await collectiveRPC(SleepRank(level: level)))
    }

    /// Maps the memory back (vLLM's `llm.wake_up(tags)`); no tags wakes everything. After a level-2
    /// sleep, a weight sync must follow before generating. On GPUs the weights come back at the same
    /// addresses but as new memory: trainers pushing into them must attach again
    /// (`ExportWeightDestination` then `AttachWeightDestinations`).
    @discardableResult
    public func wakeUp(tags: [WakeTag] = []) async throws -> EngineMemoryReport {
        EngineMemoryReport(ranks: try await collectiveRPC(WakeRank(tags: tags)))
    }
}

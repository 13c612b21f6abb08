#if canImport(Glibc)
import Glibc
#endif
import Compute
import Foundation
import Models
import WeightSync

/// `colocate bench sync-ipc --device cuda`: the data plane of weight sync on GPUs. This process is the
/// trainer: it lays out a preset's parameters in one allocation per GPU (`CUDAWeightBuffer`) and fills
/// them; one child process per tensor-parallel rank (`--child`, GPU = rank) is an engine rank with
/// its own copy of its shard (`CUDAWeightImporter`). A sync is timed from the moment the trainer starts
/// its export until every rank holds the new weights (the rank's CLOCK_MONOTONIC after its stream
/// synchronised; the same clock as the trainer's), as `shared/bench/anchor_ipc.py` times the seed's.
///
/// Reported: the first sync (handle opened, validated, planned), then the median of warm syncs for
/// three variants — the per-sync notice (`WeightSyncNotice.bytes`, hex on one line) into weights laid
/// out like the trainer's (merged copies), the full `ExportedWeights` JSON every time, and the notice
/// into one allocation per parameter (one copy per parameter) — and a plain D2D copy of the same
/// bytes through the same IPC mapping. The ranks handle requests on their GPU's executor thread.
public struct SyncIPCBenchmark: Sendable {
    public var device: String = "cuda"
    public var preset: String = "opt-125m"
    public var dtype: String = "f16"
    public var engineDtype: String?
    public var iters: Int = 20
    public var settleMs: Int = 0
    public var tp: Int = 1
    public var copyMethod: String = "batched"
    public var gpuTiming: Bool = false
    public var sharing: String?
    public var child: Bool = false
    public var rank: Int = 0

    public init() {}

    public func run() throws {
        let trainerType = try BenchmarkError.dtype(dtype)
        let engineType = try engineDtype.map(BenchmarkError.dtype) ?? trainerType
        guard let method = CUDAWeightImporter.CopyMethod(rawValue: copyMethod) else {
            throw BenchmarkError("--copy-method must be batched or per-copy, not '\(copyMethod)'")
        }
        if let sharing {
            guard CUDAMemorySharing(rawValue: sharing) != nil else { throw BenchmarkError("--sharing must be fd or ipc, not '\(sharing)'") }
            setenv("COLOCATE_CUDA_SHARING", sharing, 1)  // the ranks inherit it
        }
        if child {
            try SyncIPCEngineRank.run(preset: preset, engineType: engineType, rank: rank, worldSize: tp, copyMethod: method, gpuTiming: gpuTiming)
            return
        }
        guard device == "cuda" else { throw BenchmarkError("sync-ipc measures CUDA IPC: use --device cuda") }
        guard iters >= 1 && iters <= 10_000 else { throw BenchmarkError("--iters must be in 1...10000") }
        if let reason = CUDA.unavailableReason {
            throw BenchmarkError(reason.hasPrefix("CUDA is not available") ? reason : "CUDA is not available: \(reason)")
        }
        let cuda = try CUDA.load()
        let visible = try cuda.deviceCount()
        guard tp >= 1 && tp <= visible else { throw BenchmarkError("--tp \(tp) needs \(tp) GPUs; this process sees \(visible)") }
        let config = try ModelPreset.named(preset).config()
        try ParameterTable.validate(config: config, tensorParallelSize: tp)
        let table = ParameterTable(config: config)
        let layout = WeightLayout(table: table, dtype: trainerType)
        signal(SIGPIPE, SIG_IGN)  // a rank that died shows as a write error, not as our death

        let trainers = try (0..<tp).map { try CUDAWeightBuffer(layout: layout, device: cuda.device($0)) }
        let shared = try trainers[0].buffer.exportHandle().kind == .cudaFileDescriptor ? "fd" : "ipc"
        let gpuName = try cuda.properties(0).name
        let ranks = try (0..<tp).map { try EngineRankProcess(rank: $0, arguments: [
            "bench", "sync-ipc", "--child", "--rank", "\($0)", "--tp", "\(tp)", "--preset", preset,
            "--dtype", dtype, "--engine-dtype", engineType.description, "--copy-method", method.rawValue]
            + (gpuTiming ? ["--gpu-timing"] : [])) }
        defer { for r in ranks { r.finish() } }
        // Ready: weights allocated, kernels loaded. Each rank's flat weights, mapped here, are where
        // the push variant writes: the trainer copies in its own context, right after its own work.
        let engineLayout = WeightLayout(shardsOf: table, dtype: engineType, worldSize: tp)
        var pushers: [(backend: CUDABackend, weights: CUDABuffer, batch: CUDACopyBatch)] = []
        for (r, t) in trainers.enumerated() {
            guard let handle = try ranks[r].reply().weightsHandle else { throw BenchmarkError("engine rank \(r) did not export its weights") }
            let gpu = try cuda.device(r)
            let backend = try CUDABackend(device: gpu, memoryUtilization: 0.95)
            let weights = try gpu.open(handle)
            // Both layouts list the table's parameters in order.
            let destinations = engineLayout.entries.map {
                ShardCopyPlan.Destination(address: weights.deviceAddress + UInt64($0.offset), dtype: $0.dtype, allocation: ObjectIdentifier(weights))
            }
            let plan = ShardCopyPlan(layout: layout, sourceBase: t.buffer.deviceAddress, table: table, destinations: destinations,
                                     rank: r, worldSize: tp)
            pushers.append((backend, weights, try backend.prepareCopyBatch(plan.copies)))
        }

        var fill: UInt8 = 0x30
        func sync(_ message: Message, _ target: SyncIPCRequest.Target, verifyAll: Bool = false) throws -> (seconds: Double, replies: [SyncIPCReply]) {
            fill = fill == 0x3B ? 0x30 : fill + 1  // finite in every dtype; differs from the last sync
            for t in trainers {
                try t.buffer.fill(byte: fill)
                t.version += 1
            }
            // With a settle time the GPU has finished switching away from the trainer's context: the
            // difference to 0 is the cost of time-slicing two processes on one GPU.
            if settleMs > 0 { usleep(UInt32(settleMs) * 1000) }
            let start = monotonicNanoseconds()
            for (r, t) in trainers.enumerated() {
                switch message {
                case .full:
                    try ranks[r].send(SyncIPCRequest(exported: try t.export(), target: target, fill: fill, verifyAll: verifyAll))
                case .notice:
                    try ranks[r].send(line: CompactNoticeLine.encode(try t.exportNotice(), fill: fill, target: target))
                case .push:
                    pushers[r].backend.copy(pushers[r].batch)
                }
            }
            if case .push = message {
                for (r, p) in pushers.enumerated() {
                    try p.backend.synchronize()
                    try ranks[r].send(line: PushedLine.encode(fill: fill))
                }
            }
            var replies: [SyncIPCReply] = []
            for i in ranks.indices { replies.append(try ranks[i].reply()) }
            let done = replies.map(\.doneAt).max()!
            return (Double(done &- start) / 1e9, replies)
        }

        let bytesPerRank = table.specs.reduce(0) { $0 + $1.shard.shardShape(of: $1.shape, worldSize: tp).reduce(1, *) } * engineType.byteSize
        print("sync-ipc (\(method.rawValue) copies, \(shared) sharing): \(preset), trainer \(trainerType) → engine \(engineType), TP \(tp), \(layout.entries.count) parameters, "
            + "\(megabytes(layout.totalBytes)) trainer buffer, \(megabytes(bytesPerRank)) per engine rank, \(gpuName)")
        let verifyAll = layout.totalBytes <= 1 << 30
        let first = try sync(.full, .flat, verifyAll: verifyAll)
        print("  first sync (full export: opens the handle, validates, plans)  \(milliseconds(first.seconds))"
            + (verifyAll ? "  (every weight checked byte for byte)" : ""))

        var results: [(String, [Double], [SyncIPCReply])] = []
        for (name, message, target) in [("notice, weights laid out like the trainer's", Message.notice, SyncIPCRequest.Target.flat),
                                        ("full ExportedWeights JSON every sync", .full, .flat),
                                        ("notice, one allocation per parameter", .notice, .separate),
                                        ("push: the trainer copies into the engine's weights", .push, .flat)] {
            if target == .separate { _ = try sync(message, target) }  // plans the new destinations
            var times: [Double] = []
            var last: [SyncIPCReply] = []
            for _ in 0..<iters {
                let s = try sync(message, target)
                times.append(s.seconds)
                last = s.replies
            }
            results.append((name, times, last))
        }
        for i in ranks.indices { try ranks[i].send(SyncIPCRequest(measureCopyBandwidth: true)) }
        let copy = try ranks.indices.map { try ranks[$0].reply() }[0]
        let copyBandwidth = Double(copy.copyBytes) / copy.copySeconds

        for (name, times, replies) in results {
            let sorted = times.sorted()
            let median = sorted[sorted.count / 2]
            let bandwidth = Double(bytesPerRank) / median
            let r = replies[0]
            let p90 = sorted[min(sorted.count - 1, sorted.count * 9 / 10)]
            let share = String(format: "%.0f", 100 * bandwidth / copyBandwidth)
            let rank0 = "rank 0: \(r.copies) copies for \(r.parameters) parameters, decode \(microseconds(r.decodeNanoseconds)), "
                + "update \(microseconds(r.updateNanoseconds)) = prepare \(microseconds(r.prepareSeconds)) + copies \(microseconds(r.copyingSeconds))"
                + (r.gpuCopySeconds.map { " (GPU \(microseconds($0)))" } ?? "")
            print("  warm, \(name.padding(toLength: 46, withPad: " ", startingAt: 0)) median \(milliseconds(median))  "
                + "min \(milliseconds(sorted.first!))  p90 \(milliseconds(p90))  \(gigabytes(bandwidth))/s = \(share)% of D2D  [\(rank0)]")
        }
        print("  D2D copy of \(megabytes(copy.copyBytes)) through the mapping (cuMemcpyDtoDAsync, median of 7)  "
            + "\(milliseconds(copy.copySeconds))  \(gigabytes(copyBandwidth))/s")
        for point in copy.copyCurve ?? [] {
            print("    the same copy, first \(megabytes(Int(point[0])))  \(milliseconds(point[1]))  \(gigabytes(point[0] / point[1]))/s")
        }
        let headline = results[0].1.sorted()[results[0].1.count / 2]
        let pushed = results.last!.1.sorted()[results.last!.1.count / 2]
        print("sync-ipc \(preset) \(trainerType)→\(engineType) tp\(tp) \(method.rawValue): push median \(milliseconds(pushed)), sharing \(shared), first \(milliseconds(first.seconds)), warm median \(milliseconds(headline)), "
            + "\(String(format: "%.0f", 100 * (Double(bytesPerRank) / headline) / copyBandwidth))% of D2D")
    }

    enum Message { case full, notice, push }

    func milliseconds(_ s: Double) -> String { String(format: "%.3f ms", s * 1e3) }
    func microseconds(_ ns: UInt64) -> String { String(format: "%.0f µs", Double(ns) / 1e3) }
    func microseconds(_ s: Double) -> String { String(format: "%.0f µs", s * 1e6) }
    func megabytes(_ b: Int) -> String { String(format: "%.1f MB", Double(b) / 1e6) }
    func gigabytes(_ b: Double) -> String { String(format: "%.0f GB", b / 1e9) }
}

/// A child `colocate bench sync-ipc --child` and the pipes to it (stderr is inherited).
struct EngineRankProcess {
    let rank: Int
    let process = Process()
    let input = Pipe()
    let output = Pipe()
    let reader: LineReader
    let encoder = JSONEncoder()
    let decoder = JSONDecoder()

    init(rank: Int, arguments: [String]) throws {
        self.rank = rank
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = arguments
        process.standardInput = input
        process.standardOutput = output
        reader = LineReader(fileDescriptor: output.fileHandleForReading.fileDescriptor)
        do {
            try process.run()
        } catch {
            throw BenchmarkError("cannot start engine rank \(rank): \(error)")
        }
    }

    func send(_ request: SyncIPCRequest) throws {
        try send(line: encoder.encode(request))
    }

    func send(line: Data) throws {
        try writeLine(line, to: input.fileHandleForWriting.fileDescriptor)
    }

    /// The next reply; throws the rank's error, or when it exited.
    func reply() throws -> SyncIPCReply {
        guard let line = try reader.next() else { throw BenchmarkError("engine rank \(rank) exited") }
        let reply = try decoder.decode(SyncIPCReply.self, from: Data(line))
        if !reply.ok { throw BenchmarkError(reply.error ?? "engine rank \(rank) failed") }
        return reply
    }

    /// Closes the rank's input (it exits at end of input) and waits for it.
    func finish() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}

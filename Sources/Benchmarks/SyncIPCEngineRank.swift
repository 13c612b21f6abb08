import Compute
import Foundation
import Models
import WeightSync

/// The engine-rank side of `bench sync-ipc` (`--child`): holds this rank's shard of the preset's
/// weights on its GPU — once as one allocation laid out like the trainer's, once (on first use) as one
/// allocation per parameter — and answers each request line on stdin with one reply line on stdout.
/// Diagnostics go to stderr: stdout carries only replies.
struct SyncIPCEngineRank {
    let table: ParameterTable
    let engineType: DType
    let rank: Int
    let worldSize: Int
    let gpu: CUDADevice
    let backend: CUDABackend
    /// This rank's shards in one allocation (``WeightLayout/init(shardsOf:dtype:worldSize:)``), as the engine holds them.
    let flat: CUDAWeightBuffer
    /// Its tensors, made once: a sync hands the same dictionary to the importer every time.
    let flatTensors: [String: Tensor]
    var separate: [String: Tensor]?
    let importer: CUDAWeightImporter
    var layouts = WeightLayoutCache()
    var lastExport: ExportedWeights?

    static func run(preset: String, engineType: DType, rank: Int, worldSize: Int,
                    copyMethod: CUDAWeightImporter.CopyMethod, gpuTiming: Bool) throws {
        let encoder = JSONEncoder()
        var engine: SyncIPCEngineRank
        do {
            engine = try SyncIPCEngineRank(preset: preset, engineType: engineType, rank: rank, worldSize: worldSize)
            engine.importer.copyMethod = copyMethod
            engine.importer.measuresGPUTime = gpuTiming
            try writeLine(encoder.encode(SyncIPCReply(bytes: engine.flat.layout.totalBytes, weightsHandle: try engine.flat.buffer.exportHandle())), to: 1)
        } catch {
            try writeLine(encoder.encode(SyncIPCReply(ok: false, error: "engine rank \(rank): \(error)")), to: 1)
            return
        }
        let decoder = JSONDecoder()
        let reader = LineReader(fileDescriptor: 0)
        // The whole loop runs on the GPU's executor thread, as an engine worker's RPC loop would: the
        // sync's device work then runs inline, with no hop between threads.
        let backend = engine.backend
        try backend.perform {
            while let line = try reader.next() {
                let received = monotonicNanoseconds()
                var reply: SyncIPCReply
                do {
                    let request: SyncIPCRequest
                    if line.first == PushedLine.tag {
                        request = SyncIPCRequest(fill: try PushedLine.decode(line), pushed: true)
                    } else if line.first == CompactNoticeLine.tag {
                        let (notice, fill, target) = try CompactNoticeLine.decode(line)
                        request = SyncIPCRequest(notice: notice, target: target, fill: fill)
                    } else {
                        request = try decoder.decode(SyncIPCRequest.self, from: Data(line))
                    }
                    reply = try engine.handle(request, received: received)
                } catch {
                    reply = SyncIPCReply(ok: false, error: "engine rank \(rank): \(error)")
                }
                try writeLine(encoder.encode(reply), to: 1)
            }
        }
    }

    init(preset: String, engineType: DType, rank: Int, worldSize: Int) throws {
        table = ParameterTable(config: try ModelPreset.named(preset).config())
        self.engineType = engineType
        self.rank = rank
        self.worldSize = worldSize
        gpu = try CUDA.load().device(rank)
        backend = try CUDABackend(device: gpu, memoryUtilization: 0.9)
        flat = try CUDAWeightBuffer(layout: WeightLayout(shardsOf: table, dtype: engineType, worldSize: worldSize), allocator: backend.allocator)
        flatTensors = flat.tensors
        importer = CUDAWeightImporter(backend: backend)
    }

    mutating func handle(_ request: SyncIPCRequest, received: UInt64) throws -> SyncIPCReply {
        if request.measureCopyBandwidth == true { return try measureCopyBandwidth() }
        if request.pushed == true {
            // The trainer's stream finished writing before it told us: the weights are in place.
            var reply = SyncIPCReply(doneAt: received)
            let trainerType = lastExport?.layout.entries.first?.dtype ?? engineType
            if let fill = request.fill, let problem = try check(flatTensors, filledWith: fill, trainerType: trainerType) {
                reply.ok = false
                reply.error = problem
            }
            return reply
        }
        let exported: ExportedWeights
        if let full = request.exported {
            exported = full
        } else if let notice = request.notice {
            exported = try layouts.resolve(notice)
        } else {
            throw BenchmarkError("a request needs an export or a notice")
        }
        let weights = request.target == .separate ? try separateWeights() : flatTensors
        let decoded = monotonicNanoseconds()
        let bytes = try importer.update(from: exported, table: table, weights: weights, rank: rank, worldSize: worldSize)
        let done = monotonicNanoseconds()
        // Everything below is outside the timed sync.
        let report = importer.lastReport!
        var reply = SyncIPCReply(doneAt: done, decodeNanoseconds: decoded - received, updateNanoseconds: done - decoded,
                                 prepareSeconds: report.prepareSeconds, copyingSeconds: report.copySeconds,
                                 copies: report.copies, parameters: report.parameters, bytes: bytes, reusedPlan: report.reusedPlan,
                                 gpuCopySeconds: report.gpuCopySeconds)
        if request.exported != nil && lastExport?.layout != exported.layout { layouts.remember(exported) }
        lastExport = exported
        if let fill = request.fill, let problem = try check(weights, filledWith: fill, trainerType: exported.layout.entries.first?.dtype ?? engineType) {
            reply.ok = false
            reply.error = problem
        }
        if request.verifyAll == true {
            let differing = try importer.mismatches(against: exported, table: table, weights: weights, rank: rank, worldSize: worldSize)
            if !differing.isEmpty {
                reply.ok = false
                reply.error = "\(differing.count) weights differ from the export, e.g. \(differing.prefix(3).joined(separator: ", "))"
            }
        }
        return reply
    }

    /// One allocation per parameter, as a model loaded with `backend.zeros` has (made on first use).
    mutating func separateWeights() throws -> [String: Tensor] {
        if let separate { return separate }
        var made: [String: Tensor] = [:]
        for spec in table.specs {
            made[spec.name] = try backend.zeros(spec.shard.shardShape(of: spec.shape, worldSize: worldSize), dtype: engineType)
        }
        try backend.synchronize()
        separate = made
        return made
    }

    /// The first 64 and the last element of every weight hold the trainer's fill byte pattern,
    /// converted to the engine's dtype. Returns what is wrong, or nil.
    func check(_ weights: [String: Tensor], filledWith fill: UInt8, trainerType: DType) throws -> String? {
        let source = [UInt8](repeating: fill, count: trainerType.byteSize)
        var expected = [UInt8](repeating: 0, count: engineType.byteSize)
        source.withUnsafeBytes { s in
            expected.withUnsafeMutableBytes { d in
                DTypeConversion.convert(from: s.baseAddress!, trainerType, to: d.baseAddress!, engineType, count: 1)
            }
        }
        let size = engineType.byteSize
        var host = [UInt8](repeating: 0, count: 64 * size)
        for spec in table.specs {
            let w = weights[spec.name]!
            let address = w.deviceStorage!.deviceAddress + UInt64(w.byteOffset)
            let head = min(w.count, 64)
            for (offset, count) in [(0, head), (w.count - 1, 1)] {
                try host.withUnsafeMutableBytes { try gpu.copy(from: address + UInt64(offset * size), toHost: $0.baseAddress!, byteCount: count * size) }
                for i in 0..<count where Array(host[i * size..<(i + 1) * size]) != expected {
                    return "\(spec.name)[\(offset + i)] has bytes \(host[i * size..<(i + 1) * size].map { String($0, radix: 16) }), expected \(expected.map { String($0, radix: 16) })"
                }
            }
        }
        return nil
    }

    /// A plain device-to-device copy of the bytes a sync writes, from the trainer's buffer (through the
    /// IPC mapping) into the flat weights: the bandwidth the sync is compared with. Median of 7.
    func measureCopyBandwidth() throws -> SyncIPCReply {
        guard let exported = lastExport else { throw BenchmarkError("measure the copy bandwidth after a sync") }
        let source = try importer.open(exported.handle)
        let destinationBytes = table.specs.reduce(0) { $0 + $1.shard.shardShape(of: $1.shape, worldSize: worldSize).reduce(1, *) } * engineType.byteSize
        let bytes = min(destinationBytes, exported.handle.byteCount, flat.layout.totalBytes)
        let from = source.deviceAddress + UInt64(exported.handle.offset), to = flat.buffer.deviceAddress
        func median(_ count: Int) throws -> Double {
            var times: [Double] = []
            try backend.perform {
                for _ in 0..<7 {
                    let start = monotonicNanoseconds()
                    try backend.stream.copy(from: from, to: to, byteCount: count)
                    try backend.stream.synchronize()
                    times.append(Double(monotonicNanoseconds() - start) / 1e9)
                }
            }
            return times.sorted()[times.count / 2]
        }
        let times = [try median(bytes)]
        // The same copy at smaller sizes: where its bandwidth falls off says whether the mapping's size matters.
        var curve: [[Double]] = []
        for count in [256 << 20, 1 << 30, 2 << 30, 4 << 30, 8 << 30] where count < bytes {
            curve.append([Double(count), try median(count)])
        }
        return SyncIPCReply(copyBytes: bytes, copySeconds: times[0], copyCurve: curve)
    }
}

import Compute
import Foundation

/// `colocate bench copy --device cuda`: device-to-device copy bandwidth on one GPU — the copy engine
/// path (`cuMemcpyDtoDAsync`) against the `copy_batch` kernel weight sync uses, at several tile sizes,
/// and a copy right after the GPU sat idle against copies back to back. The yardstick of `bench
/// sync-ipc`'s "% of D2D".
public struct CopyBenchmark: Sendable {
    public var device: String = "cuda"
    public var sizes: String = "250.5,1073.7,10348.3"
    public var tiles: String = "16,64,256,1024"
    public var iters: Int = 10

    public init() {}

    public func run() throws {
        guard device == "cuda" else { throw BenchmarkError("bench copy measures GPU copies: use --device cuda") }
        guard iters >= 1 && iters <= 1000 else { throw BenchmarkError("--iters must be in 1...1000") }
        let byteCounts = try sizes.split(separator: ",").map { text -> Int in
            guard let mb = Double(text.trimmingCharacters(in: .whitespaces)), mb > 0, mb < 1e6 else { throw BenchmarkError("--sizes: '\(text)' is not a size in MB") }
            return Int(mb * 1e6) / 256 * 256
        }
        let tileBytes = try tiles.split(separator: ",").map { text -> Int in
            guard let kib = Int(text.trimmingCharacters(in: .whitespaces)), kib >= 1, kib <= 1 << 16 else { throw BenchmarkError("--tiles: '\(text)' is not a size in KiB") }
            return kib << 10
        }
        if let reason = CUDA.unavailableReason { throw BenchmarkError(reason) }
        let gpu = try CUDA.load().device(0)
        let backend = try CUDABackend(device: gpu, memoryUtilization: 0.95)
        let largest = byteCounts.max()!
        let source = try backend.allocator.allocate(byteCount: largest)
        let destination = try backend.allocator.allocate(byteCount: largest)
        try source.fill(byte: 0x3C)
        let (start, end) = (try gpu.makeEvent(), try gpu.makeEvent())
        print("bench copy on \(try CUDA.load().properties(0).name): median of \(iters) copies, GPU time between events")

        /// GPU seconds of `queue`, median of `iters`; `idleMilliseconds` of sleep before each when > 0.
        func measure(idleMilliseconds: Int = 0, _ queue: () throws -> Void) throws -> Double {
            var times: [Double] = []
            for _ in 0..<iters {
                if idleMilliseconds > 0 { usleep(UInt32(idleMilliseconds) * 1000) }
                try backend.perform {
                    try start.record(on: backend.stream)
                    try queue()
                    try end.record(on: backend.stream)
                    try backend.synchronize()
                }
                times.append(try end.seconds(since: start))
            }
            return times.sorted()[times.count / 2]
        }
        func line(_ what: String, _ bytes: Int, _ seconds: Double) {
            print("  \(what.padding(toLength: 44, withPad: " ", startingAt: 0)) \(String(format: "%9.3f ms  %6.0f GB/s", seconds * 1e3, Double(bytes) / seconds / 1e9))")
        }
        for bytes in byteCounts {
            print(String(format: "%.1f MB:", Double(bytes) / 1e6))
            func memcpy() throws { try backend.stream.copy(from: source.deviceAddress, to: destination.deviceAddress, byteCount: bytes) }
            line("cuMemcpyDtoDAsync, back to back", bytes, try measure(memcpy))
            line("cuMemcpyDtoDAsync, after 20 ms idle", bytes, try measure(idleMilliseconds: 20, memcpy))
            let whole = StridedCopy(source: source.deviceAddress, sourcePitch: bytes, sourceType: .u8, destination: destination.deviceAddress,
                                    destinationPitch: bytes, destinationType: .u8, rows: 1, columns: bytes)
            for tile in tileBytes {
                let batch = try backend.prepareCopyBatch([whole], tileBytes: tile, copyEngine: false)
                line("copy_batch, \(tile >> 10) KiB tiles (\(batch.tiles) blocks)", bytes, try measure { backend.copy(batch) })
            }
            let batch = try backend.prepareCopyBatch([whole], copyEngine: false)
            line("copy_batch, default tiles, after 20 ms idle", bytes, try measure(idleMilliseconds: 20) { backend.copy(batch) })
        }
    }
}

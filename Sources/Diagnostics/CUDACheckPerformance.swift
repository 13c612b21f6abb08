import Collectives
import Compute
import Foundation

/// GEMM throughput and device-to-device copy bandwidth, timed with CUDA events on the backend's stream.
struct CUDAThroughputCheck {
    let backend: CUDABackend

    func run(bytes: Int) throws {
        print("\n== GEMM throughput (cuBLASLt, f32 activations and output)")
        for (n, k, o) in [(4096, 4096, 4096), (8192, 8192, 8192), (16, 4096, 11008), (256, 4096, 11008)] {
            for dtype in [DType.f32, .bf16, .f16] {
                if dtype == .f32 && n == 8192 { continue }
                let x = try backend.zeros([n, k], dtype: .f32)
                let w = try backend.zeros([o, k], dtype: dtype)
                let y = try backend.zeros([n, o], dtype: .f32)
                let seconds = try time(iterations: n <= 256 ? 50 : 10) { backend.linear(x, weight: w, bias: nil, into: y) }
                let flops = 2.0 * Double(n) * Double(k) * Double(o) / seconds
                let weightBandwidth = Double(o * k * dtype.byteSize) / seconds
                print("  [\(n),\(k)]×[\(o),\(k)]ᵀ \(dtype): \(String(format: "%.3f", seconds * 1e3)) ms  \(String(format: "%.1f", flops / 1e12)) TFLOP/s  weights read at \(String(format: "%.0f", weightBandwidth / 1e9)) GB/s")
            }
        }

        print("\n== paged attention (32 query heads, 8 KV heads, head dim 128, block 16, f32 and bf16 caches)")
        for (sequences, context, prefill) in [(64, 2048, false), (256, 1024, false), (1, 2048, true)] {
            for cacheType in [DType.f32, .bf16] {
                let (heads, kvHeads, headDim, blockSize) = (32, 8, 128, 16)
                let blocksPerSequence = (context + blockSize - 1) / blockSize
                let tables = (0..<sequences).map { s in (0..<blocksPerSequence).map { Int32(s * blocksPerSequence + $0) } }
                let tokensPerSequence = prefill ? context : 1
                let layout = AttentionLayout(
                    blockSize: blockSize, blockTables: tables,
                    sequenceOfToken: (0..<sequences).flatMap { s in [Int32](repeating: Int32(s), count: tokensPerSequence) },
                    positionOfToken: (0..<sequences).flatMap { _ in (0..<tokensPerSequence).map { Int32(prefill ? $0 : context - 1) } })
                let tokens = sequences * tokensPerSequence
                let slots = sequences * blocksPerSequence * blockSize
                let kCache = try backend.zeros([slots, kvHeads, headDim], dtype: cacheType)
                let vCache = try backend.zeros([slots, kvHeads, headDim], dtype: cacheType)
                let q = try backend.zeros([tokens, heads, headDim], dtype: .f32)
                let out = try backend.zeros([tokens, heads, headDim], dtype: .f32)
                let seconds = try time(iterations: 5) {
                    backend.attention(q: q, kCache: kCache, vCache: vCache, layout: layout, scale: 0.088, into: out)
                }
                let rate: String
                if prefill {
                    let pairs = Double(context) * Double(context + 1) / 2 * Double(sequences)
                    rate = "\(String(format: "%.1f", 4 * Double(heads * headDim) * pairs / seconds / 1e12)) TFLOP/s"
                } else {
                    let unique = Double(sequences * context * 2 * kvHeads * headDim * cacheType.byteSize)
                    rate = "KV cache read at \(String(format: "%.0f", unique / seconds / 1e9)) GB/s (unique bytes)"
                }
                print("  \(prefill ? "prefill" : "decode") \(sequences) seq × \(context) \(cacheType): \(String(format: "%.3f", seconds * 1e3)) ms, \(rate)")
            }
        }

        print("\n== device-to-device copy")
        let source = try backend.allocator.allocate(byteCount: bytes)
        let destination = try backend.allocator.allocate(byteCount: bytes)
        let seconds = try time(iterations: 10) {
            try backend.stream.copy(from: source.deviceAddress, to: destination.deviceAddress, byteCount: bytes)
        }
        print("  \(bytes >> 20) MiB: \(String(format: "%.3f", seconds * 1e3)) ms, \(String(format: "%.0f", Double(bytes) / seconds / 1e9)) GB/s (bytes copied per second)")
    }

    /// Median-free simple timing: one warm-up, then `iterations` back to back between two events.
    func time(iterations: Int, _ body: () throws -> Void) throws -> Double {
        let device = backend.cudaDevice
        return try device.sync {
            try body()
            try backend.synchronize()
            let start = try device.makeEvent(), end = try device.makeEvent()
            try start.record(on: backend.stream)
            for _ in 0..<iterations { try body() }
            try end.record(on: backend.stream)
            try end.synchronize()
            try backend.synchronize()
            return try end.seconds(since: start) / Double(iterations)
        }
    }
}

/// NCCL all-reduce between the visible GPUs, one rank per GPU on its own device thread.
struct CUDANCCLCheck {
    let cuda: CUDA

    func run() async throws -> CUDACheckReport {
        var report = CUDACheckReport()
        print("\n== NCCL all-reduce")
        let count = try cuda.deviceCount()
        guard count >= 2 else {
            print("  skipped: \(count) GPU visible")
            return report
        }
        let id = try NCCLCommunicator.uniqueID()
        let elements = 64 << 20  // 256 MiB of f32
        let results = try await withThrowingTaskGroup(of: (Int, Bool, Double).self) { group in
            for rank in 0..<count {
                let device = try cuda.device(rank)
                group.addTask {
                    try await device.run {
                        let backend = try CUDABackend(device: device, memoryUtilization: 0.2)
                        let communicator = try NCCLCommunicator(device: device, uniqueID: id, rank: rank, rankCount: count)
                        let values = (0..<1024).map { Float($0 % 17) * Float(rank + 1) }
                        let small = try backend.upload(Tensor(values, shape: [1024]))
                        backend.allReduce(small, communicator: communicator)
                        let sum = try backend.floats(small)
                        let factor = Float(count * (count + 1) / 2)
                        let correct = sum.enumerated().allSatisfy { $1 == Float($0 % 17) * factor }
                        let big = try backend.zeros([elements], dtype: .f32)
                        let seconds = try CUDAThroughputCheck(backend: backend).time(iterations: 5) {
                            backend.allReduce(big, communicator: communicator)
                        }
                        return (rank, correct, seconds)
                    }
                }
            }
            var out: [(Int, Bool, Double)] = []
            for try await result in group { out.append(result) }
            return out.sorted { $0.0 < $1.0 }
        }
        for (rank, correct, seconds) in results {
            let busBandwidth = Double(elements * 4) * 2 * Double(count - 1) / Double(count) / seconds
            print("  rank \(rank): sum \(correct ? "correct" : "WRONG"), 256 MiB f32 in \(String(format: "%.3f", seconds * 1e3)) ms (bus \(String(format: "%.0f", busBandwidth / 1e9)) GB/s)")
            if correct { report.pass("nccl") } else { report.fail("nccl rank \(rank)") }
        }
        return report
    }
}

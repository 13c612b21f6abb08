import Compute
import Foundation
import Models

/// `cuda-check`: the `copy_batch` kernel (weight sync's copies) against the host, byte for byte — one
/// launch of contiguous, strided, wider-than-a-tile and dtype-converting copies at odd offsets, with
/// small tiles so that every kind of task and tile boundary is crossed.
struct CUDACopyBatchCheck {
    let backend: CUDABackend

    func run() throws -> CUDACheckReport {
        var report = CUDACheckReport()
        let sourceBytes = 8 << 20, destinationBytes = 8 << 20
        let source = try backend.allocator.allocate(byteCount: sourceBytes)
        let destination = try backend.allocator.allocate(byteCount: destinationBytes)
        // Source bytes with the exponent bits kept low: finite in every dtype, so conversions compare exactly.
        var generator = SplitMix64(seed: 7)
        let hostSource = (0..<sourceBytes).map { _ in UInt8(truncatingIfNeeded: generator.next() >> 29) & 0x3F }
        try hostSource.withUnsafeBytes { try backend.cudaDevice.copy(fromHost: $0.baseAddress!, to: source.deviceAddress, byteCount: sourceBytes) }
        try destination.fill(byte: 0xEE)

        let shapes: [(DType, DType, rows: Int, columns: Int, sourcePitch: Int, destinationPitch: Int)] = [
            (.f16, .f16, 1, 300_001, 300_001, 300_001),
            (.f16, .f16, 7, 33, 33, 33),
            (.bf16, .bf16, 400, 24, 48, 24),
            (.f32, .f32, 3, 30_000, 60_000, 30_000),
            (.f32, .bf16, 50, 17, 40, 17),
            (.f32, .f16, 1, 50_001, 50_001, 50_001),
            (.f16, .f32, 90, 8, 8, 8),
            (.bf16, .f16, 20, 3, 5, 3),
            (.u8, .u8, 11, 1001, 1003, 1001),
        ]
        var copies: [StridedCopy] = []
        var (sourceOffset, destinationOffset) = (4, 8)  // element-aligned (as weights are), not 16-byte aligned
        for s in shapes {
            let c = StridedCopy(source: source.deviceAddress + UInt64(sourceOffset), sourcePitch: s.sourcePitch, sourceType: s.0,
                                destination: destination.deviceAddress + UInt64(destinationOffset), destinationPitch: s.destinationPitch,
                                destinationType: s.1, rows: s.rows, columns: s.columns)
            copies.append(c)
            sourceOffset = (sourceOffset + ((s.rows - 1) * s.sourcePitch + s.columns) * s.0.byteSize + 3) / 4 * 4 + 12
            destinationOffset = (destinationOffset + ((s.rows - 1) * s.destinationPitch + s.columns) * s.1.byteSize + 3) / 4 * 4 + 20
            precondition(sourceOffset < sourceBytes && destinationOffset < destinationBytes)
        }
        var expected = [UInt8](repeating: 0xEE, count: destinationBytes)
        hostSource.withUnsafeBytes { s in
            expected.withUnsafeMutableBytes { d in
                for c in copies {
                    let (so, dOff) = (Int(c.source - source.deviceAddress), Int(c.destination - destination.deviceAddress))
                    for r in 0..<c.rows {
                        DTypeConversion.convert(from: s.baseAddress! + so + r * c.sourcePitch * c.sourceType.byteSize, c.sourceType,
                                                to: d.baseAddress! + dOff + r * c.destinationPitch * c.destinationType.byteSize,
                                                c.destinationType, count: c.columns)
                    }
                }
            }
        }
        for tile in [1 << 10, CUDACopyBatch.defaultTileBytes] {
            try destination.fill(byte: 0xEE)
            let batch = try backend.prepareCopyBatch(copies, tileBytes: tile, copyEngine: false)
            backend.copy(batch)
            try backend.synchronize()
            var got = [UInt8](repeating: 0, count: destinationBytes)
            try got.withUnsafeMutableBytes { try backend.cudaDevice.copy(from: destination.deviceAddress, toHost: $0.baseAddress!, byteCount: destinationBytes) }
            let wrong = zip(got, expected).reduce(0) { $0 + ($1.0 == $1.1 ? 0 : 1) }
            print("  \(wrong == 0 ? "ok  " : "FAIL") copy_batch, \(copies.count) copies in \(batch.tasks) tasks / \(batch.tiles) tiles of \(tile >> 10) KiB: "
                + (wrong == 0 ? "byte-exact, nothing outside the copies touched" : "\(wrong) bytes differ"))
            if wrong == 0 { report.pass("copy_batch") } else { report.fail("copy_batch \(tile >> 10) KiB tiles") }
        }
        report.merge(try runOnCopyEngine())
        return report
    }

    /// A batch of two large plain contiguous copies (at odd offsets, in swapped order) goes to the copy
    /// engine and lands byte for byte, with the bytes around them untouched.
    private func runOnCopyEngine() throws -> CUDACheckReport {
        var report = CUDACheckReport()
        let piece = CUDACopyBatch.copyEngineMinimumBytes, bytes = 2 * piece + (4 << 10)
        let source = try backend.allocator.allocate(byteCount: bytes)
        let destination = try backend.allocator.allocate(byteCount: bytes)
        var generator = SplitMix64(seed: 11)
        let block = (0..<(1 << 20)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        var host = [UInt8](repeating: 0, count: bytes)
        for (i, start) in stride(from: 0, to: bytes, by: block.count).enumerated() {
            for j in start..<min(start + block.count, bytes) { host[j] = block[j - start] ^ UInt8(truncatingIfNeeded: i) }
        }
        try host.withUnsafeBytes { try backend.cudaDevice.copy(fromHost: $0.baseAddress!, to: source.deviceAddress, byteCount: bytes) }
        try destination.fill(byte: 0xEE)
        // Source [3, 3 + piece) → destination [piece + 1000, ...); source [piece + 3, 2 piece + 3) → destination [5, ...).
        let copies = [
            StridedCopy(source: source.deviceAddress + 3, sourcePitch: piece, sourceType: .u8, destination: destination.deviceAddress + UInt64(piece + 1000),
                        destinationPitch: piece, destinationType: .u8, rows: 1, columns: piece),
            StridedCopy(source: source.deviceAddress + UInt64(piece + 3), sourcePitch: piece, sourceType: .u8, destination: destination.deviceAddress + 5,
                        destinationPitch: piece, destinationType: .u8, rows: 1, columns: piece),
        ]
        let batch = try backend.prepareCopyBatch(copies)
        backend.copy(batch)
        try backend.synchronize()
        var expected = [UInt8](repeating: 0xEE, count: bytes)
        expected.replaceSubrange((piece + 1000)..<(2 * piece + 1000), with: host[3..<(piece + 3)])
        expected.replaceSubrange(5..<(piece + 5), with: host[(piece + 3)..<(2 * piece + 3)])
        var got = [UInt8](repeating: 0, count: bytes)
        try got.withUnsafeMutableBytes { try backend.cudaDevice.copy(from: destination.deviceAddress, toHost: $0.baseAddress!, byteCount: bytes) }
        let exact = got == expected
        print("  \(exact && batch.usesCopyEngine ? "ok  " : "FAIL") two copies of \(piece >> 20) MiB \(batch.usesCopyEngine ? "on the copy engine" : "NOT on the copy engine"): "
            + (exact ? "byte-exact, nothing outside the copies touched" : "bytes differ"))
        if exact && batch.usesCopyEngine { report.pass("copy batch on the copy engine") } else { report.fail("copy batch on the copy engine") }
        return report
    }
}

@testable import Compute
import Testing

/// `copy_batch` runs on a GPU only; its tasks are cut on the host. These tests run the kernel's
/// algorithm (as `CopyKernels` writes it: binary search for the task, `rowsPerTile` rows per block,
/// units moved or converted) over host memory, so a task table that misses, overlaps or overruns a
/// byte fails here, in CI.
@Suite("copy_batch task tables")
struct CopyBatchTaskTests {
    /// Runs the task table the way the kernel does, with host addresses.
    func emulate(_ fields: [Int64], tasks: Int, tiles: Int) {
        let f = CopyKernels.taskFields
        func field(_ t: Int, _ i: Int) -> Int64 { fields[t * f + i] }
        for tile in 0..<Int64(tiles) {
            var (lo, hi) = (0, tasks - 1)
            while lo < hi {
                let mid = (lo + hi + 1) >> 1
                if field(mid, 6) <= tile { lo = mid } else { hi = mid - 1 }
            }
            let (src, dst, srcPitch, dstPitch) = (field(lo, 0), field(lo, 1), field(lo, 2), field(lo, 3))
            let (taskRows, units, firstTile, rowsPerTile, kind) = (field(lo, 4), field(lo, 5), field(lo, 6), field(lo, 7), Int(field(lo, 8)))
            let firstRow = (tile - firstTile) * rowsPerTile
            let rows = min(rowsPerTile, taskRows - firstRow)
            precondition(rows > 0, "tile \(tile) has no rows")
            for r in 0..<rows {
                let s = UnsafeRawPointer(bitPattern: Int(src + (firstRow + r) * srcPitch))!
                let d = UnsafeMutableRawPointer(bitPattern: Int(dst + (firstRow + r) * dstPitch))!
                if kind < CopyKernels.conversionBase {
                    precondition(Int(bitPattern: s) % kind == 0 && Int(bitPattern: d) % kind == 0, "unaligned \(kind)-byte words")
                    d.copyMemory(from: s, byteCount: Int(units) * kind)
                } else {
                    let code = kind - CopyKernels.conversionBase
                    let types: [DType] = [.f32, .bf16, .f16]
                    DTypeConversion.convert(from: s, types[code / 3], to: d, types[code % 3], count: Int(units))
                }
            }
        }
    }

    func check(_ copies: [(StridedCopy, sourceBytes: Int, destinationBytes: Int)], tileBytes: Int) {
        // One host buffer per side per copy; addresses go into the copies.
        var sources: [[UInt8]] = copies.map { c in (0..<c.sourceBytes).map { _ in UInt8.random(in: 0...255) & 0x3F } }
        var expected: [[UInt8]] = copies.map { [UInt8](repeating: 0xEE, count: $0.destinationBytes) }
        var actual = expected
        for i in copies.indices {
            let c = copies[i].0
            sources[i].withUnsafeBytes { s in
                expected[i].withUnsafeMutableBytes { d in
                    for r in 0..<c.rows {
                        DTypeConversion.convert(from: s.baseAddress! + Int(c.source) + r * c.sourcePitch * c.sourceType.byteSize, c.sourceType,
                                                to: d.baseAddress! + Int(c.destination) + r * c.destinationPitch * c.destinationType.byteSize,
                                                c.destinationType,
                                                count: c.columns)
                    }
                }
            }
        }
        let offsets = copies.map { c in (Int(c.0.source), Int(c.0.destination)) }  // offsets within the buffers
        withPointers(&sources, &actual) { sourceBases, destinationBases in
            let placed = zip(copies, zip(sourceBases, destinationBases)).enumerated().map { i, pair in
                var c = pair.0.0
                c.source = UInt64(UInt(bitPattern: pair.1.0)) + UInt64(offsets[i].0)
                c.destination = UInt64(UInt(bitPattern: pair.1.1)) + UInt64(offsets[i].1)
                return c
            }
            let (fields, tasks, tiles) = CUDACopyBatch.tasks(for: placed, tileBytes: tileBytes)
            emulate(fields, tasks: tasks, tiles: tiles)
        }
        for i in copies.indices { #expect(actual[i] == expected[i], "copy \(i): \(copies[i].0)") }
    }

    /// Base addresses of every buffer, held for the call.
    func withPointers(_ a: inout [[UInt8]], _ b: inout [[UInt8]], _ body: ([UnsafeRawPointer], [UnsafeMutableRawPointer]) -> Void) {
        let sources = a.map { buffer -> UnsafeMutableRawPointer in
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(buffer.count, 1) + 64, alignment: 64)
            buffer.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: buffer.count) }
            return p
        }
        let destinations = b.map { buffer -> UnsafeMutableRawPointer in
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(buffer.count, 1) + 64, alignment: 64)
            buffer.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: buffer.count) }
            return p
        }
        body(sources.map { UnsafeRawPointer($0) }, destinations)
        for i in b.indices { b[i] = Array(UnsafeRawBufferPointer(start: destinations[i], count: b[i].count)) }
        for p in sources + destinations { p.deallocate() }
    }

    /// A copy with offsets (in bytes, from the buffer starts) and the buffer sizes it needs.
    func copy(_ s: DType, _ d: DType, rows: Int, columns: Int, sourcePitch: Int, destinationPitch: Int,
              sourceOffset: Int = 0, destinationOffset: Int = 0) -> (StridedCopy, sourceBytes: Int, destinationBytes: Int) {
        let c = StridedCopy(source: UInt64(sourceOffset), sourcePitch: sourcePitch, sourceType: s,
                            destination: UInt64(destinationOffset), destinationPitch: destinationPitch, destinationType: d,
                            rows: rows, columns: columns)
        return (c, sourceOffset + ((rows - 1) * sourcePitch + columns) * s.byteSize,
                destinationOffset + ((rows - 1) * destinationPitch + columns) * d.byteSize)
    }

    @Test("contiguous, strided, wide-row and converting copies are covered exactly", arguments: [16, 256, 4096])
    func mixed(tileBytes: Int) {
        check([
            copy(.f16, .f16, rows: 1, columns: 10_000, sourcePitch: 10_000, destinationPitch: 10_000),
            copy(.f16, .f16, rows: 7, columns: 33, sourcePitch: 33, destinationPitch: 33, sourceOffset: 2, destinationOffset: 6),
            copy(.bf16, .bf16, rows: 40, columns: 24, sourcePitch: 48, destinationPitch: 24),       // a column-parallel slice
            copy(.f32, .f32, rows: 3, columns: 3000, sourcePitch: 6000, destinationPitch: 3000),    // rows wider than small tiles
            copy(.f32, .bf16, rows: 5, columns: 17, sourcePitch: 40, destinationPitch: 17),
            copy(.f32, .f16, rows: 1, columns: 5001, sourcePitch: 5001, destinationPitch: 5001),
            copy(.f16, .f32, rows: 9, columns: 8, sourcePitch: 8, destinationPitch: 8, sourceOffset: 2),
            copy(.bf16, .f16, rows: 2, columns: 3, sourcePitch: 5, destinationPitch: 3),
            copy(.f16, .f16, rows: 0, columns: 5, sourcePitch: 5, destinationPitch: 5),
        ], tileBytes: tileBytes)
    }

    @Test("plain copies use the widest word every address and pitch allows")
    func wordWidth() {
        let aligned = StridedCopy(source: 4096, sourcePitch: 1 << 20, sourceType: .f16, destination: 8192,
                                  destinationPitch: 1 << 20, destinationType: .f16, rows: 1, columns: 1 << 20)
        let odd = StridedCopy(source: 4098, sourcePitch: 5, sourceType: .f16, destination: 8192,
                              destinationPitch: 5, destinationType: .f16, rows: 3, columns: 5)
        let (a, _, aTiles) = CUDACopyBatch.tasks(for: [aligned], tileBytes: 64 << 10)
        #expect(a[8] == 16)
        #expect(aTiles == 32, "2 MiB in 64 KiB tiles")
        let (o, _, _) = CUDACopyBatch.tasks(for: [odd], tileBytes: 64 << 10)
        #expect(o[8] == 2)
    }
}

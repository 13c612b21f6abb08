import CCUDA

/// A list of ``StridedCopy``s prepared to run as one `copy_batch` launch: the copies cut into tasks
/// of tile-sized rows, uploaded once. Running it again costs one kernel launch, whatever the number
/// of copies — a tensor-parallel weight sync (a strided slice of every weight) goes from one driver
/// call per parameter to one launch per sync.
///
/// A batch of a few large plain contiguous copies (a whole TP-1 sync, laid out alike on both sides)
/// runs on the copy engine instead, one `cuMemcpyDtoDAsync` each: on an H200 the copy engine moves
/// 10 GB 3% faster than the kernel (`colocate bench copy --device cuda`), and a handful of driver calls
/// costs nothing beside it.
///
/// The batch holds addresses, not memory: whoever prepared it keeps the sources and destinations
/// alive while it may run.
public final class CUDACopyBatch: @unchecked Sendable {
    /// Copies it was prepared from.
    public let copies: Int
    /// Bytes it writes.
    public let destinationBytes: Int
    /// Tasks and blocks of the launch (0 when the copy engine runs the batch).
    public let tasks: Int
    public let tiles: Int
    let table: CUDABuffer?
    /// The copies, when the copy engine runs them.
    let engineCopies: [(source: UInt64, destination: UInt64, bytes: Int)]

    init(copies: Int, destinationBytes: Int, tasks: Int, tiles: Int, table: CUDABuffer?,
         engineCopies: [(source: UInt64, destination: UInt64, bytes: Int)] = []) {
        self.copies = copies
        self.destinationBytes = destinationBytes
        self.tasks = tasks
        self.tiles = tiles
        self.table = table
        self.engineCopies = engineCopies
    }

    /// Whether the copy engine runs this batch rather than `copy_batch`.
    public var usesCopyEngine: Bool { !engineCopies.isEmpty }

    /// Bytes of source a block copies at most (rows are grouped up to this; a longer row is cut).
    public static let defaultTileBytes = 64 << 10
    /// The smallest average copy for which a batch of plain contiguous copies goes to the copy engine:
    /// from 256 MiB up the two are even, or the copy engine ahead.
    public static let copyEngineMinimumBytes = 256 << 20

    /// The tasks of `copies` as the kernel reads them: `CopyKernels.taskFields` integers each.
    static func tasks(for copies: [StridedCopy], tileBytes: Int) -> (fields: [Int64], tasks: Int, tiles: Int) {
        precondition(tileBytes >= 16 && tileBytes % 16 == 0, "tile of \(tileBytes) bytes")
        var fields: [Int64] = []
        var tiles = 0
        func add(source: UInt64, destination: UInt64, sourcePitch: Int, destinationPitch: Int, rows: Int, units: Int,
                 sourceRowBytes: Int, kind: Int) {
            let rowsPerTile = max(1, tileBytes / sourceRowBytes)
            let taskTiles = (rows + rowsPerTile - 1) / rowsPerTile
            fields += [Int64(bitPattern: source), Int64(bitPattern: destination), Int64(sourcePitch), Int64(destinationPitch),
                       Int64(rows), Int64(units), Int64(tiles), Int64(rowsPerTile), Int64(kind)]
            tiles += taskTiles
        }
        for c in copies where c.rows > 0 && c.columns > 0 {
            let (s, d) = (c.sourceType.byteSize, c.destinationType.byteSize)
            let convert = c.sourceType != c.destinationType
            // Rows in units of source bytes: a contiguous copy becomes tile-wide rows plus a tail, a
            // strided one keeps its rows, cut into tile-wide column chunks when wider than a tile.
            var pieces: [(source: UInt64, destination: UInt64, sourcePitch: Int, destinationPitch: Int, rows: Int, elements: Int)] = []
            if c.isContiguous {
                let total = c.elements
                let perRow = tileBytes / s
                if total / perRow > 0 {
                    pieces.append((c.source, c.destination, perRow * s, perRow * d, total / perRow, perRow))
                }
                let done = total / perRow * perRow
                if done < total {
                    pieces.append((c.source + UInt64(done * s), c.destination + UInt64(done * d), 0, 0, 1, total - done))
                }
            } else {
                let perChunk = tileBytes / s
                var column = 0
                while column < c.columns {
                    let width = min(perChunk, c.columns - column)
                    pieces.append((c.source + UInt64(column * s), c.destination + UInt64(column * d),
                                   c.sourcePitch * s, c.destinationPitch * d, c.rows, width))
                    column += width
                }
            }
            for p in pieces {
                if convert {
                    add(source: p.source, destination: p.destination, sourcePitch: p.sourcePitch, destinationPitch: p.destinationPitch,
                        rows: p.rows, units: p.elements, sourceRowBytes: p.elements * s,
                        kind: CopyKernels.conversionBase + 3 * code(c.sourceType) + code(c.destinationType))
                } else {
                    let rowBytes = p.elements * s
                    let alignment = [p.source, p.destination, UInt64(p.sourcePitch), UInt64(p.destinationPitch), UInt64(rowBytes)]
                        .reduce(UInt64(0)) { $0 | $1 }
                    let width = [16, 8, 4, 2, 1].first { alignment % UInt64($0) == 0 }!
                    add(source: p.source, destination: p.destination, sourcePitch: p.sourcePitch, destinationPitch: p.destinationPitch,
                        rows: p.rows, units: rowBytes / width, sourceRowBytes: rowBytes, kind: width)
                }
            }
        }
        return (fields, fields.count / CopyKernels.taskFields, tiles)
    }

    private static func code(_ dtype: DType) -> Int {
        switch dtype {
        case .f32: 0
        case .bf16: 1
        case .f16: 2
        default: preconditionFailure("copy_batch converts f32, bf16 and f16, not \(dtype)")
        }
    }
}

extension CUDABackend {
    /// Prepares `copies` (addresses on this device or mapped into it; pitches ≥ columns; f32 / bf16 /
    /// f16 when the dtype converts) for ``copy(_:)``: cuts them into tasks and uploads the task table,
    /// or, when `copyEngine` allows it and every copy is plain, contiguous and large, keeps them for the
    /// copy engine.
    public func prepareCopyBatch(_ copies: [StridedCopy], tileBytes: Int = CUDACopyBatch.defaultTileBytes,
                                 copyEngine: Bool = true) throws -> CUDACopyBatch {
        for c in copies {
            precondition(c.rows >= 0 && c.columns >= 0 && c.sourcePitch >= c.columns && c.destinationPitch >= c.columns,
                         "copy of \(c.rows)×\(c.columns) with pitches \(c.sourcePitch), \(c.destinationPitch)")
            // A converting copy reads and writes whole elements; plain copies pick a word width that fits.
            if c.sourceType != c.destinationType,
               c.source % UInt64(c.sourceType.byteSize) != 0 || c.destination % UInt64(c.destinationType.byteSize) != 0 {
                throw ComputeError("a \(c.sourceType) → \(c.destinationType) copy needs element-aligned addresses (\(c.source), \(c.destination))")
            }
        }
        let written = copies.reduce(0) { $0 + $1.elements * $1.destinationType.byteSize }
        if copyEngine, !copies.isEmpty, copies.allSatisfy({ $0.sourceType == $0.destinationType && $0.isContiguous }),
           written / copies.count >= CUDACopyBatch.copyEngineMinimumBytes {
            let engineCopies = copies.map { (source: $0.source, destination: $0.destination, bytes: $0.elements * $0.sourceType.byteSize) }
            return CUDACopyBatch(copies: copies.count, destinationBytes: written, tasks: 0, tiles: 0, table: nil, engineCopies: engineCopies)
        }
        let (fields, tasks, tiles) = CUDACopyBatch.tasks(for: copies, tileBytes: tileBytes)
        guard tiles < Int(Int32.max) else { throw ComputeError("a copy batch of \(tiles) tiles is too large for one launch") }
        let table = try allocator.allocate(byteCount: max(fields.count * 8, 8))
        try cudaDevice.sync {
            try fields.withUnsafeBytes { bytes in
                if bytes.count > 0 { try cudaDevice.copy(fromHost: bytes.baseAddress!, to: table.deviceAddress, byteCount: bytes.count) }
            }
        }
        return CUDACopyBatch(copies: copies.count, destinationBytes: written, tasks: tasks, tiles: tiles, table: table)
    }

    /// Queues every copy of `batch` on the stream: one kernel launch, or its few copy-engine copies.
    public func copy(_ batch: CUDACopyBatch) {
        if batch.usesCopyEngine {
            perform("copy_batch on the copy engine") {
                for c in batch.engineCopies { try stream.copy(from: c.source, to: c.destination, byteCount: c.bytes) }
            }
            return
        }
        guard batch.tiles > 0, let table = batch.table else { return }
        perform("copy_batch") {
            try launch("copy_batch", grid: (batch.tiles, 1, 1), block: (CopyKernels.threads, 1, 1),
                       [.address(table.deviceAddress), .int32(Int32(batch.tasks))])
        }
    }
}

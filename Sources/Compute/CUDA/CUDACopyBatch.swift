import CCUDA

/// A list of ``StridedCopy``s prepared to run as one `copy_batch` launch: the copies cut into tasks
/// of tile-sized rows, uploaded once. Running it again costs one kernel launch, whatever the number
/// of copies — a tensor-parallel weight sync (a strided slice of every weight) goes from one driver
/// call per parameter to one launch per sync.
///
/// The batch holds addresses, not memory: whoever prepared it keeps the sources and destinations
/// alive while it may run.
public final class CUDACopyBatch: @unchecked Sendable {
    /// Copies it was prepared from.
    public let copies: Int
    /// Bytes it writes.
    public let destinationBytes: Int
    /// Tasks and blocks of the launch.
    public let tasks: Int
    public let tiles: Int
    let table: CUDABuffer

    init(copies: Int, destinationBytes: Int, tasks: Int, tiles: Int, table: CUDABuffer) {
        self.copies = copies
        self.destinationBytes = destinationBytes
        self.tasks = tasks
        self.tiles = tiles
        self.table = table
    }

    /// Bytes of source a block copies at most (rows are grouped up to this; a longer row is cut).
    public static let defaultTileBytes = 64 << 10

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
    /// f16 when the dtype converts) for ``copy(_:)``: cuts them into tasks and uploads the task table.
    public func prepareCopyBatch(_ copies: [StridedCopy], tileBytes: Int = CUDACopyBatch.defaultTileBytes) throws -> CUDACopyBatch {
        for c in copies {
            precondition(c.rows >= 0 && c.columns >= 0 && c.sourcePitch >= c.columns && c.destinationPitch >= c.columns,
                         "copy of \(c.rows)×\(c.columns) with pitches \(c.sourcePitch), \(c.destinationPitch)")
            // A converting copy reads and writes whole elements; plain copies pick a word width that fits.
            if c.sourceType != c.destinationType,
               c.source % UInt64(c.sourceType.byteSize) != 0 || c.destination % UInt64(c.destinationType.byteSize) != 0 {
                throw ComputeError("a \(c.sourceType) → \(c.destinationType) copy needs element-aligned addresses (\(c.source), \(c.destination))")
            }
        }
        let (fields, tasks, tiles) = CUDACopyBatch.tasks(for: copies, tileBytes: tileBytes)
        guard tiles < Int(Int32.max) else { throw ComputeError("a copy batch of \(tiles) tiles is too large for one launch") }
        let table = try allocator.allocate(byteCount: max(fields.count * 8, 8))
        try cudaDevice.sync {
            try fields.withUnsafeBytes { bytes in
                if bytes.count > 0 { try cudaDevice.copy(fromHost: bytes.baseAddress!, to: table.deviceAddress, byteCount: bytes.count) }
            }
        }
        let written = copies.reduce(0) { $0 + $1.elements * $1.destinationType.byteSize }
        return CUDACopyBatch(copies: copies.count, destinationBytes: written, tasks: tasks, tiles: tiles, table: table)
    }

    /// Queues every copy of `batch` on the stream as one kernel launch.
    public func copy(_ batch: CUDACopyBatch) {
        if batch.tiles == 0 { return }
        perform("copy_batch") {
            try launch("copy_batch", grid: (batch.tiles, 1, 1), block: (CopyKernels.threads, 1, 1),
                       [.address(batch.table.deviceAddress), .int32(Int32(batch.tasks))])
        }
    }
}

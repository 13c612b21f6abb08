import Compute
import Models

/// Where each parameter sits inside a trainer's flat weight buffer.
public struct WeightLayout: Sendable, Codable, Equatable {
    public struct Entry: Sendable, Codable, Equatable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        /// Byte offset from the start of the buffer; aligned to `WeightLayout.alignment`.
        public var offset: Int

        public var count: Int { shape.reduce(1, *) }
        public var byteCount: Int { count * dtype.byteSize }

        /// The entry's byte count, or nil when a dimension is negative or the size overflows an `Int`.
        var checkedByteCount: Int? {
            var total = dtype.byteSize
            for d in shape {
                guard d >= 0 else { return nil }
                let (product, overflow) = total.multipliedReportingOverflow(by: d)
                guard !overflow else { return nil }
                total = product
            }
            return total
        }
    }

    /// Every tensor starts on a 256-byte boundary: cache-line aligned for SIMD on CPU, and aligned for
    /// vectorised copies and cuBLASLt on GPU.
    public static let alignment = 256

    public var entries: [Entry]
    public var totalBytes: Int

    /// Lays out `table`'s full (unsharded) parameters in order, in `dtype`.
    public init(table: ParameterTable, dtype: DType) {
        var entries: [Entry] = []
        var offset = 0
        for spec in table.specs {
            entries.append(Entry(name: spec.name, dtype: dtype, shape: spec.shape, offset: offset))
            offset += (spec.count * dtype.byteSize + Self.alignment - 1) / Self.alignment * Self.alignment
        }
        self.entries = entries
        totalBytes = offset
    }

    /// Lays out rank `rank`'s shard of every parameter of `table` at tensor-parallel size `worldSize`,
    /// in order, in `dtype`: an engine rank's weights as one buffer (the same for every rank).
    public init(shardsOf table: ParameterTable, dtype: DType, worldSize: Int) {
        var entries: [Entry] = []
        var offset = 0
        for spec in table.specs {
            let shape = spec.shard.shardShape(of: spec.shape, worldSize: worldSize)
            entries.append(Entry(name: spec.name, dtype: dtype, shape: shape, offset: offset))
            offset += (shape.reduce(1, *) * dtype.byteSize + Self.alignment - 1) / Self.alignment * Self.alignment
        }
        self.entries = entries
        totalBytes = offset
    }

    public subscript(name: String) -> Entry? { entries.first { $0.name == name } }

    /// Checks what a layout from another process must satisfy before any size is computed from it:
    /// non-negative dimensions and offsets, sizes that fit in an `Int`, and every tensor inside
    /// `totalBytes`. (Which tensors, shapes and dtypes an engine accepts is `WeightUpdateCheck`'s.)
    public func validate() throws(WeightSyncError) {
        guard totalBytes >= 0 else { throw WeightSyncError("weight layout has a negative size \(totalBytes)") }
        for entry in entries {
            guard let bytes = entry.checkedByteCount else {
                throw WeightSyncError("weight layout tensor \(entry.name) has shape \(entry.shape), which is negative or too large to address")
            }
            guard MemoryHandle.range(offset: entry.offset, byteCount: bytes, fitsIn: totalBytes) else {
                throw WeightSyncError("weight layout tensor \(entry.name) (\(bytes) bytes at \(entry.offset)) lies outside the layout's \(totalBytes) bytes")
            }
        }
    }

    private enum CodingKeys: String, CodingKey { case entries, totalBytes }

    /// Decodes and ``validate()``s, so that a layout from the wire is safe to compute sizes from.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        entries = try c.decode([Entry].self, forKey: .entries)
        totalBytes = try c.decode(Int.self, forKey: .totalBytes)
        do {
            try validate()
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }
}

/// Where a trainer can write an engine rank's weights itself (push sync): the rank's weight buffer,
/// exported like a trainer's (one handle, and a layout of this rank's shards), with the rank's place
/// in its tensor-parallel group. An engine hands these out once; trainers on the same device attach
/// to them and then copy straight into the engine's weights on every sync, in their own GPU context.
public struct WeightDestination: Sendable, Codable, Equatable {
    public var exported: ExportedWeights
    public var rank: Int
    public var worldSize: Int
    /// The rank's ``WeightWriteGate``, which a push holds while it writes (nil: the rank has none, and
    /// nothing keeps a push out of its generation).
    public var gate: MemoryHandle?

    public init(exported: ExportedWeights, rank: Int, worldSize: Int, gate: MemoryHandle? = nil) {
        self.exported = exported
        self.rank = rank
        self.worldSize = worldSize
        self.gate = gate
    }

    public var deviceUUID: String { exported.handle.deviceUUID }
}

/// What a trainer hands to engines: one handle to its flat buffer and the layout to read it by.
/// Sent once per sync through the control plane; tensor bytes never travel with it.
public struct ExportedWeights: Sendable, Codable, Equatable {
    public var handle: MemoryHandle
    public var layout: WeightLayout
    /// Increments on every change the trainer makes; lets an engine skip an unchanged export.
    public var version: UInt64

    public init(handle: MemoryHandle, layout: WeightLayout, version: UInt64) {
        self.handle = handle
        self.layout = layout
        self.version = version
    }
}

/// An error of weight sync: names the tensor, device or handle at fault.
public struct WeightSyncError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

import Compute
import Models

/// One copy of a weight update (see ``StridedCopy``).
public typealias ShardCopy = StridedCopy

/// The copies that move rank `rank`'s shard of every parameter from a trainer's flat buffer into an
/// engine's weights: one 2-D copy per parameter (``ShardSpec/block(of:rank:worldSize:)``), then
/// neighbours merged where both sides continue exactly where the last one ended in the same
/// allocation with the same dtypes — so an engine whose weights are one allocation laid out like the
/// trainer's (``WeightLayout/init(shardsOf:dtype:worldSize:)``) takes a whole tensor-parallel-1 update in a single copy.
public struct ShardCopyPlan: Sendable, Equatable {
    /// Where a parameter goes: its first byte, its dtype, and which allocation it is in (copies never
    /// merge across allocations, even adjacent ones).
    public struct Destination: Sendable, Equatable {
        public var address: UInt64
        public var dtype: DType
        public var allocation: ObjectIdentifier?

        public init(address: UInt64, dtype: DType, allocation: ObjectIdentifier?) {
            self.address = address
            self.dtype = dtype
            self.allocation = allocation
        }
    }

    public private(set) var copies: [ShardCopy] = []
    /// Parameters the plan covers.
    public let parameters: Int
    /// Bytes written to the destinations.
    public private(set) var destinationBytes = 0
    /// Bytes read from the source.
    public private(set) var sourceBytes = 0

    /// Plans the update of `layout` (whose buffer starts at `sourceBase`) into `destinations`, given
    /// in the layout's entry order. The layout must have been validated against `table`.
    public init(layout: WeightLayout, sourceBase: UInt64, table: ParameterTable, destinations: [Destination],
                rank: Int, worldSize: Int, merge: Bool = true) {
        precondition(destinations.count == layout.entries.count, "one destination per layout entry")
        parameters = layout.entries.count
        var lastAllocation: ObjectIdentifier?
        for (entry, destination) in zip(layout.entries, destinations) {
            let spec = table[entry.name]!
            let b = spec.shard.block(of: entry.shape, rank: rank, worldSize: worldSize)
            let copy = ShardCopy(
                source: sourceBase + UInt64(entry.offset + b.offset * entry.dtype.byteSize), sourcePitch: b.pitch,
                sourceType: entry.dtype, destination: destination.address, destinationPitch: b.columns,
                destinationType: destination.dtype, rows: b.rows, columns: b.columns)
            destinationBytes += copy.elements * destination.dtype.byteSize
            sourceBytes += copy.elements * entry.dtype.byteSize
            if merge, let last = copies.last, destination.allocation != nil, destination.allocation == lastAllocation,
               last.isContiguous, copy.isContiguous,
               last.sourceType == copy.sourceType, last.destinationType == copy.destinationType,
               last.source + UInt64(last.elements * last.sourceType.byteSize) == copy.source,
               last.destination + UInt64(last.elements * last.destinationType.byteSize) == copy.destination {
                let total = last.elements + copy.elements
                copies[copies.count - 1] = ShardCopy(
                    source: last.source, sourcePitch: total, sourceType: last.sourceType,
                    destination: last.destination, destinationPitch: total, destinationType: last.destinationType,
                    rows: 1, columns: total)
            } else {
                copies.append(copy)
            }
            lastAllocation = destination.allocation
        }
    }
}

/// One strided copy between device (or host) byte addresses, with element pitches: `rows` rows of
/// `columns` elements, row `r` of the source at `source + r·sourcePitch` elements, of the destination
/// at `destination + r·destinationPitch` elements, converting the dtype on the way.
///
/// Weight sync describes a tensor-parallel slice of a trainer's flat buffer going into an engine
/// weight with one of these; a backend runs a list of them as one operation.
public struct StridedCopy: Sendable, Equatable {
    public var source: UInt64
    public var sourcePitch: Int
    public var sourceType: DType
    public var destination: UInt64
    public var destinationPitch: Int
    public var destinationType: DType
    public var rows: Int
    public var columns: Int

    public init(source: UInt64, sourcePitch: Int, sourceType: DType, destination: UInt64, destinationPitch: Int,
                destinationType: DType, rows: Int, columns: Int) {
        self.source = source
        self.sourcePitch = sourcePitch
        self.sourceType = sourceType
        self.destination = destination
        self.destinationPitch = destinationPitch
        self.destinationType = destinationType
        self.rows = rows
        self.columns = columns
    }

    /// Whether both sides are one contiguous run of `rows · columns` elements.
    public var isContiguous: Bool { rows == 1 || (sourcePitch == columns && destinationPitch == columns) }
    /// Elements copied.
    public var elements: Int { rows * columns }
}

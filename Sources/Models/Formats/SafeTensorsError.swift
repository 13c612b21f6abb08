/// Why a safetensors file could not be read or written. Every validation rule has its own `kind`;
/// `description` is one line naming the file and, where there is one, the tensor.
public struct SafeTensorsError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        /// The file could not be opened, examined or mapped.
        case cannotOpen
        /// Shorter than the 8-byte header length.
        case fileTooSmall
        /// The header length exceeds the 100 MB that safetensors allows.
        case headerTooLarge
        /// The header length points past the end of the file.
        case headerBeyondFile
        /// The header bytes are not UTF-8.
        case headerNotUTF8
        /// The header is not well-formed JSON (includes duplicate keys).
        case invalidJSON
        /// The header is JSON but not an object.
        case headerNotObject
        /// A tensor entry is not an object or lacks `dtype`, `shape` or `data_offsets`.
        case invalidEntry
        /// A dtype name that safetensors does not define.
        case unknownDType
        /// A safetensors dtype that colocate does not handle (BOOL, F64, I8, F8_E4M3, …).
        case unsupportedDType
        /// `shape` is not an array of non-negative integers.
        case invalidShape
        /// The element or byte count of `shape` does not fit in an `Int`.
        case shapeOverflow
        /// `data_offsets` is not `[begin, end]` with integers 0 ≤ begin ≤ end.
        case invalidDataOffsets
        /// `end` lies beyond the data section.
        case dataOutOfBounds
        /// `end - begin` differs from the shape's byte count.
        case sizeMismatch
        /// Two tensors' byte ranges overlap.
        case overlappingTensors
        /// Bytes of the data section that no tensor covers lie before a tensor (a hole).
        case gapInData
        /// Bytes of the data section that no tensor covers follow the last tensor.
        case trailingData
        /// `__metadata__` is not an object of strings.
        case invalidMetadata
        /// A lookup of a name that the file does not hold.
        case tensorNotFound
        /// The writer was given a tensor it cannot write (on a device, not contiguous, bad name).
        case unwritableTensor
        /// Writing the file failed.
        case writeFailed
    }

    public var kind: Kind
    public var path: String
    public var tensor: String?
    /// What is wrong, without the path and tensor.
    public var message: String

    public init(_ kind: Kind, path: String, tensor: String? = nil, _ message: String) {
        self.kind = kind
        self.path = path
        self.tensor = tensor
        self.message = message
    }

    public var description: String {
        if let tensor { return "\(path): tensor '\(tensor)': \(message)" }
        return "\(path): \(message)"
    }
}

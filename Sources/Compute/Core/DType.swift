/// Element types of tensors. Raw values are the safetensors dtype names.
public enum DType: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case i64 = "I64"
    case u8 = "U8"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f32, .i32: 4
        case .f16, .bf16: 2
        case .i64: 8
        case .u8: 1
        }
    }

    public var isFloatingPoint: Bool { self == .f32 || self == .f16 || self == .bf16 }

    /// Lower-case name as users type it (`--dtype bf16`).
    public var description: String { rawValue.lowercased() }

    /// Parses `f32`, `float32`, `fp16`, `bfloat16`, … as well as safetensors names.
    public init?(name: String) {
        switch name.lowercased() {
        case "f32", "float32", "fp32", "float": self = .f32
        case "f16", "float16", "fp16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "i32", "int32": self = .i32
        case "i64", "int64": self = .i64
        case "u8", "uint8": self = .u8
        default: return nil
        }
    }
}

import Compute

/// A benchmark's refusal of its parameters or a failure it found: one line, printed by the CLI.
public struct BenchmarkError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }

    /// `f32`, `bf16` or `f16`; anything else is a clear error.
    static func dtype(_ name: String) throws(BenchmarkError) -> DType {
        guard let t = DType(name: name), t.isFloatingPoint else { throw BenchmarkError("unknown dtype '\(name)' (use f32, bf16 or f16)") }
        return t
    }
}

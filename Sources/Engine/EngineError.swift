/// An error of the engine a user can cause: bad engine arguments, a budget too small, ranks that
/// disagree. One line.
public struct EngineError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An error of the Compute layer: a one-line message meant for the user.
public struct ComputeError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

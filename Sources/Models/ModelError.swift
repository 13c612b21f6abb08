/// An error of the Models layer that a user can cause (bad model files, prompts, ids, parallel sizes).
public struct ModelError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A training error a user can cause (bad data, a bad flag, a diverged loss, a checkpoint that cannot
/// be written or belongs to another model): one line naming the problem.
public struct TrainingError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

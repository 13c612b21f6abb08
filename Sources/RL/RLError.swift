/// An error of the RL loop a user can cause (a bad flag, a dataset row without its fields, a reward
/// closure that threw, a rank that died): one line that says what and where.
public struct RLError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

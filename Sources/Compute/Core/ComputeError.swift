/// An error of the Compute layer: a one-line message meant for the user, and a `code` for programs
/// (`catch let e as ComputeError where e.code == .overBudget`), as swift-system's `Errno` names errors.
public struct ComputeError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure: compare with `==` or match in a `switch`.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Not classified further; the message says what happened.
        public static let unspecified = Code(rawValue: "unspecified")
        /// An allocation beyond the process's memory budget (its share of the device).
        public static let overBudget = Code(rawValue: "overBudget")
        /// A handle or data that names another device than the one it is used on.
        public static let wrongDevice = Code(rawValue: "wrongDevice")
        /// The process that shared memory (or a descriptor) has exited, or no longer shares it.
        public static let peerGone = Code(rawValue: "peerGone")
        /// Bytes from outside (a handle, a reference, a file) that cannot be what they claim to be.
        public static let malformed = Code(rawValue: "malformed")
        /// A system call failed.
        public static let systemCall = Code(rawValue: "systemCall")
    }

    public var code: Code
    public var message: String

    public init(_ message: String) {
        self.init(.unspecified, message)
    }

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

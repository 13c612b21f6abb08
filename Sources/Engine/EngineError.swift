import Cluster

/// An error of the engine a user can cause: bad engine arguments, a budget too small, ranks that
/// disagree. One line, and a `code` for programs (`catch let e as EngineError where e.code == .overBudget`).
/// Thrown on an engine rank, it reaches the driver with its code (`CodedError`); `LLM` rethrows it as an
/// `EngineError` (the initialiser that takes a `RemoteError`).
public struct EngineError: CodedError, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure: compare with `==` or match in a `switch`.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Not classified further; the message says what happened.
        public static let unspecified = Code(rawValue: "unspecified")
        /// Engine arguments that cannot work (sizes, fractions, a model without what is asked).
        public static let invalidArgument = Code(rawValue: "invalidArgument")
        /// What the engine needs does not fit its memory budget.
        public static let overBudget = Code(rawValue: "overBudget")
        /// Tensor-parallel ranks disagree (different tokens, devices or settings).
        public static let ranksDisagree = Code(rawValue: "ranksDisagree")
        /// A rank holds incomplete weights: a weight sync began and did not finish.
        public static let incompleteWeights = Code(rawValue: "incompleteWeights")
        /// A rank failed mid-step; the engine was stopped.
        public static let rankFailed = Code(rawValue: "rankFailed")
        /// The engine sleeps (its KV cache or weights released): wake it before generating.
        public static let asleep = Code(rawValue: "asleep")
        /// The engine woke from a level-2 sleep and no weight sync has written its weights since.
        public static let weightsNotLoaded = Code(rawValue: "weightsNotLoaded")
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

    /// The engine error a rank threw, as the driver received it (its message names the actor); nil
    /// when `remote` came from another kind of error.
    public init?(_ remote: RemoteError) {
        guard let code = remote.code(of: EngineError.self) else { return nil }
        self.init(code, remote.description)
    }
}

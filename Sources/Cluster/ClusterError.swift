#if canImport(Glibc)
import Glibc
#endif

/// A mistake in how the cluster was asked to do something (bad device spec, infeasible placement,
/// unknown actor type, …), a call that ran out of time, or a system call that failed. One line, meant
/// for the user; `code` says which kind, for programs (`catch let e as ClusterError where e.code == .timedOut`).
public struct ClusterError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure, as swift-system's `Errno` names a system error: compare with `==` or
    /// match in a `switch`.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Not classified further; the message says what happened.
        public static let unspecified = Code(rawValue: "unspecified")
        /// An argument or a request was malformed (a bad device spec, an unknown actor type, …).
        public static let invalidArgument = Code(rawValue: "invalidArgument")
        /// A placement or layout does not fit the devices.
        public static let infeasible = Code(rawValue: "infeasible")
        /// A call got no reply within its deadline; the actor may still be alive.
        public static let timedOut = Code(rawValue: "timedOut")
        /// The waiting task was cancelled.
        public static let cancelled = Code(rawValue: "cancelled")
        /// A message is larger than the wire format carries.
        public static let messageTooLarge = Code(rawValue: "messageTooLarge")
        /// The connection is closed (by this side, or broken by a failed send).
        public static let connectionClosed = Code(rawValue: "connectionClosed")
        /// The peer broke the wire protocol.
        public static let protocolViolation = Code(rawValue: "protocolViolation")
        /// A system call failed; `errno` holds its code.
        public static let systemCall = Code(rawValue: "systemCall")
    }

    public var code: Code
    public var message: String
    /// The system error number, for `.systemCall`.
    public var errno: Int32?

    public init(_ message: String) {
        self.init(.unspecified, message)
    }

    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String { message }

    /// `what: strerror(errno)`, for a system call that just failed.
    static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> ClusterError {
        ClusterError(.systemCall, "\(what): \(String(cString: strerror(code)))", errno: code)
    }
}

/// A remote handler threw: the call reached the actor and failed there. Carries the remote message
/// and, when the error was a `CodedError`, its type and code, to match on:
///
///     catch let error as RemoteError where error.code(of: EngineError.self) == .asleep
public struct RemoteError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Name of the actor (or "driver") whose handler threw.
    public var actor: String
    /// The remote error's description.
    public var message: String
    /// The name of the remote error's type, with its module (`"Engine.EngineError"`), when it was a `CodedError`.
    public var errorType: String?
    /// Its code's raw value (`"asleep"`).
    public var codeName: String?

    public init(actor: String, message: String, errorType: String? = nil, codeName: String? = nil) {
        self.actor = actor
        self.message = message
        self.errorType = errorType
        self.codeName = codeName
    }

    public var description: String { "actor '\(actor)': \(message)" }

    /// The remote error's code, when the handler threw an `E` (nil for any other error, or from a peer
    /// that sent no code).
    public func code<E: CodedError>(of type: E.Type) -> E.Code? {
        guard errorType == E.codeDomain, let codeName else { return nil }
        return E.Code(rawValue: codeName)
    }
}

/// The actor's process is gone (or its connection closed): every pending and later call fails with it.
public struct ActorDiedError: Error, CustomStringConvertible, Sendable, Equatable {
    public var actor: String
    public var pid: Int32?
    /// How the process ended, when it was our child and has been reaped.
    public var termination: Termination?
    public init(actor: String, pid: Int32?, termination: Termination?) {
        self.actor = actor
        self.pid = pid
        self.termination = termination
    }
    public var description: String {
        let who = pid.map { "actor '\(actor)' (pid \($0))" } ?? "actor '\(actor)'"
        guard let termination else { return "\(who) closed its connection" }
        return "\(who) \(termination)"
    }
}

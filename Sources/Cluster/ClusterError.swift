#if canImport(Glibc)
import Glibc
#endif

/// A mistake in how the cluster was asked to do something (bad device spec, infeasible placement,
/// unknown actor type, …) or a system call that failed. One line, meant for the user.
public struct ClusterError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    /// `what: strerror(errno)`, for a system call that just failed.
    static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> ClusterError {
        ClusterError("\(what): \(String(cString: strerror(code)))")
    }
}

/// A remote handler threw: the call reached the actor and failed there. Carries the remote message.
public struct RemoteError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Name of the actor (or "driver") whose handler threw.
    public var actor: String
    /// The remote error's description.
    public var message: String
    public init(actor: String, message: String) {
        self.actor = actor
        self.message = message
    }
    public var description: String { "actor '\(actor)': \(message)" }
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

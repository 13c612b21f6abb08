#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended, from its `waitpid` status.
public enum Termination: Sendable, Hashable, CustomStringConvertible {
    case exited(code: Int32)
    case signaled(signal: Int32)
    /// Reaped by someone else (`ECHILD`): the status is lost.
    case unknown
    /// A worker on another host that is gone without a status: its host (a Ray actor, a node) died.
    case lost(reason: String)

    init(waitStatus s: Int32) {
        // The WIFEXITED/WTERMSIG macros are not imported into Swift.
        let sig = s & 0x7f
        if sig == 0 {
            self = .exited(code: (s >> 8) & 0xff)
        } else {
            self = .signaled(signal: sig)
        }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let sig): "was killed by signal \(sig) (\(Termination.signalName(sig)))"
        case .unknown: "exited (status unknown)"
        case .lost(let reason): "is gone: \(reason)"
        }
    }

    static func signalName(_ sig: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
            SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV",
            SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
        ]
        return names[sig] ?? "signal \(sig)"
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation

/// A worker process this process started: its pid (which is also its process group), and its
/// termination once reaped.
final class WorkerProcess: Sendable {
    let pid: pid_t
    /// Resolved when the process has exited and been reaped.
    let exit = Promise<Termination>()
    /// For a worker on another host (hosted by a Ray actor): how to signal it, since `kill(2)` cannot
    /// reach it. Its `exit` is resolved by whoever learns of its death (`RayBackend`), not by waitpid.
    private let remoteSignal: (@Sendable (Int32) -> Void)?

    private init(pid: pid_t, remoteSignal: (@Sendable (Int32) -> Void)? = nil) {
        self.pid = pid
        self.remoteSignal = remoteSignal
    }

    /// A worker this process did not start: `pid` is its pid on its own host.
    static func remote(pid: pid_t, signal: @escaping @Sendable (Int32) -> Void) -> WorkerProcess {
        WorkerProcess(pid: pid, remoteSignal: signal)
    }

    /// Starts `executable` with `arguments` and exactly `environment`, in a new process group, stdin
    /// from /dev/null, every signal at its default disposition and none blocked. Spawned on the
    /// process-long spawner thread (see `DedicatedThread`). Call `startReaper` next.
    static func spawn(executable: String, arguments: [String], environment: [String: String]) async throws(ClusterError) -> WorkerProcess {
        let argv = [executable == "/proc/self/exe" ? "colocate" : executable] + arguments
        let envp = environment.map { "\($0.key)=\($0.value)" }.sorted()
        let result: Result<pid_t, ClusterError> = await DedicatedThread.spawner.run {
            spawnNow(executable: executable, argv: argv, envp: envp)
        }
        return WorkerProcess(pid: try result.get())
    }

    /// Waits for the process on a thread of its own; `onExit` runs there after `exit` is resolved.
    func startReaper(onExit: @escaping @Sendable (Termination) -> Void) {
        if remoteSignal != nil {
            Task { [exit] in onExit((try? await exit.value()) ?? .unknown) }
            return
        }
        let pid = self.pid
        startThread(name: "colocate.reaper") { [self] in
            var status: Int32 = 0
            var r: pid_t
            repeat { r = waitpid(pid, &status, 0) } while r == -1 && errno == EINTR
            let termination = r == pid ? Termination(waitStatus: status) : .unknown
            exit.succeed(termination)
            onExit(termination)
        }
    }

    /// Sends `signal` to the worker's process group (itself and anything it started in it).
    func signalGroup(_ signal: Int32) {
        if let remoteSignal { return remoteSignal(signal) }
        // The group outlives a reaped leader only while members remain, so the id is never reused
        // for an unrelated group while this can reach it.
        _ = kill(-pid, signal)
    }

    var hasExited: Bool { exit.peek != nil }

    private static func spawnNow(executable: String, argv: [String], envp: [String]) -> Result<pid_t, ClusterError> {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        let flags = POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
        posix_spawnattr_setflags(&attributes, Int16(flags))
        posix_spawnattr_setpgroup(&attributes, 0)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Only stdio crosses into the worker. Descriptors that other code opened without close-on-exec
        // (Foundation's `Pipe`, for one) would otherwise leak into workers and keep pipes from ever
        // reaching EOF while the workers live.
        _ = cshim_spawn_file_actions_addclosefrom(&actions, 3)

        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnvp = envp.map { strdup($0) } + [nil]
        defer {
            for p in cArgv { free(p) }
            for p in cEnvp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, cArgv, cEnvp)
        guard rc == 0 else { return .failure(ClusterError.errno("cannot start worker \(executable)", rc)) }
        return .success(pid)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// The Swift driver's line to Ray: `python -m colocate_ray.driver` (see python/colocate_ray/driver.py)
/// as a child process, JSON lines on its stdin and stdout. Requests carry an id and are answered in
/// any order; lines without an id are events (an actor's death), handed to `onEvent`.
///
/// The helper exits when its stdin ends, so it dies with this process even after `kill -9`; Ray then
/// ends the actors and placement groups it created (they share their creator's fate).
final class RayHelper: Sendable {
    private struct State {
        var pending: [Int: Promise<Data>] = [:]
        var nextID = 0
        var failure: String?
    }

    private let process: Process
    private let input: FileHandle
    private let state = Mutex(State())
    private let onEvent: Mutex<@Sendable ([String: Any]) -> Void>
    /// The helper's stderr, kept short, for the error when it dies.
    private let stderrTail = Mutex("")

    /// Starts the helper with `python` (a Python with Ray and colocate_ray installed).
    init(python: String) throws(ClusterError) {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw ClusterError(.invalidArgument, "no Python for Ray at \(python); install Ray mode with `bash python/install-ray.sh` or set COLOCATE_RAY_PYTHON")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-u", "-m", "colocate_ray.driver"]
        var environment = ProcessInfo.processInfo.environment
        environment["RAY_USAGE_STATS_ENABLED"] = "0"
        process.environment = environment
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        self.process = process
        input = stdin.fileHandleForWriting
        onEvent = Mutex({ _ in })
        do {
            try process.run()
        } catch {
            throw ClusterError("cannot start the Ray helper \(python) -m colocate_ray.driver: \(error)")
        }
        let output = stdout.fileHandleForReading
        let errors = stderr.fileHandleForReading
        startThread(name: "colocate.ray-helper") { [self] in readLoop(output) }
        startThread(name: "colocate.ray-helper-err") { [self] in
            while true {
                let data = errors.availableData
                if data.isEmpty { break }
                self.stderrTail.withLock { tail in
                    tail = String((tail + String(decoding: data, as: UTF8.self)).suffix(4000))
                }
            }
        }
    }

    func setEventHandler(_ handler: @escaping @Sendable ([String: Any]) -> Void) {
        onEvent.withLock { $0 = handler }
    }

    /// Sends `request` (an op and its fields) and returns the reply's fields; a failed request
    /// throws Ray's error as a one-line message, and one unanswered after `timeout` (when given)
    /// throws `.timedOut`.
    func request(_ op: String, _ fields: [String: Any] = [:], timeout: Duration? = nil) async throws -> [String: Any] {
        let promise = Promise<Data>()
        let (id, failure) = state.withLock { s -> (Int, String?) in
            s.nextID += 1
            if s.failure == nil { s.pending[s.nextID] = promise }
            return (s.nextID, s.failure)
        }
        if let failure { throw ClusterError(failure) }
        var message = fields
        message["op"] = op
        message["id"] = id
        let line = try JSONSerialization.data(withJSONObject: message) + Data("\n".utf8)
        do {
            try input.write(contentsOf: line)
        } catch {
            helperEnded()
        }
        let data: Data
        if let timeout {
            guard let result = await promise.value(timeout: timeout) else {
                throw ClusterError(.timedOut, "the Ray helper did not answer '\(op)' within \(timeout)")
            }
            data = try result.get()
        } else {
            data = try await promise.value()
        }
        guard let reply = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ClusterError(.protocolViolation, "the Ray helper sent a reply that is not an object")
        }
        guard reply["ok"] as? Bool == true else {
            throw ClusterError(reply["error"] as? String ?? "the Ray helper failed '\(op)'")
        }
        return reply
    }

    /// Ends the helper: asks it to remove its groups and exit, then closes its stdin.
    func shutdown() async {
        _ = try? await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { _ = try await self.request("shutdown") }
            group.addTask { try await Task.sleep(for: .seconds(10)) }
            try await group.next()
            group.cancelAll()
        }
        close()
    }

    /// Closes the helper's stdin (it exits at EOF) without waiting.
    func close() {
        try? input.close()
    }

    /// Ends the helper now: SIGKILL, for a helper stuck in a request (`ray.init` retrying a head that
    /// does not answer reads no more of its stdin).
    func terminate() {
        close()
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    var pid: Int32 { process.processIdentifier }

    private func readLoop(_ output: FileHandle) {
        var buffer = Data()
        while true {
            let data = output.availableData
            if data.isEmpty { break }
            buffer.append(data)
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[buffer.startIndex..<newline]
                buffer = Data(buffer[buffer.index(after: newline)...])
                dispatch(Data(line))
            }
        }
        helperEnded()
    }

    private func dispatch(_ line: Data) {
        guard let object = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any] else { return }
        if let id = object["id"] as? Int {
            state.withLock { $0.pending.removeValue(forKey: id) }?.succeed(line)
        } else if object["event"] != nil {
            onEvent.withLock { $0 }(object)
        }
    }

    private func helperEnded() {
        let tail = stderrTail.withLock { $0 }
        let lastLine = tail.split(separator: "\n").last(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty })
        let message = "the Ray helper (python -m colocate_ray.driver) exited" + (lastLine.map { ": \($0)" } ?? "")
        let pending = state.withLock { s -> [Promise<Data>] in
            if s.failure == nil { s.failure = message }
            defer { s.pending = [:] }
            return Array(s.pending.values)
        }
        for p in pending { p.fail(ClusterError(message)) }
    }
}

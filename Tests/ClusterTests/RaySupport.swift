#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Testing
import Diagnostics

@testable import Cluster

/// The simulated Ray cluster the Ray tests share (`python -m colocate_ray.testing 2 2`): a head that
/// offers nothing, and two nodes with 2 virtual CPU devices each. Started once per test process; it
/// shuts down when the test process exits (EOF on its stdin).
final class RayTestCluster: Sendable {
    /// The Ray venv's Python, or nil (the Ray tests then skip, saying why).
    static let python: String? = RayOptions.defaultPython() ?? {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        for _ in 0..<4 {
            dir = dir.deletingLastPathComponent()
            let p = dir.appendingPathComponent(".venv-ray/bin/python").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }()
    static let skipReason: Comment = "Ray mode is not installed (.venv-ray absent): run `bash python/install-ray.sh`"

    let address: String
    /// Ray node ids of the simulated nodes, A then B.
    let nodes: Mutex<[String]>
    private let process: Process
    private let input: FileHandle
    private let output: FileHandle

    private init(python: String) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-m", "colocate_ray.testing", "2", "2"]
        var env = ProcessInfo.processInfo.environment
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        process.environment = env
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        input = stdin.fileHandleForWriting
        output = stdout.fileHandleForReading
        let first = try RayTestCluster.readLine(output)
        guard let address = first["address"] as? String, let nodes = first["nodes"] as? [String] else {
            throw ClusterError("the test Ray cluster did not start: \(first)")
        }
        self.address = address
        self.nodes = Mutex(nodes)
    }

    private static func readLine(_ handle: FileHandle) throws -> [String: Any] {
        var line = Data()
        while true {
            let byte = try handle.read(upToCount: 1) ?? Data()
            if byte.isEmpty { throw ClusterError("the test Ray cluster exited") }
            if byte[byte.startIndex] == UInt8(ascii: "\n") { break }
            line.append(byte)
        }
        return (try JSONSerialization.jsonObject(with: line) as? [String: Any]) ?? [:]
    }

    private static let started = Mutex<Result<RayTestCluster, any Error>?>(nil)

    /// The shared cluster, started on first use (on a thread of its own: it takes seconds).
    static func shared() async throws -> RayTestCluster {
        let python = try #require(python)
        return try await onThread {
            try started.withLock { s in
                if s == nil { s = Result { try RayTestCluster(python: python) } }
                return try s!.get()
            }
        }
    }

    /// Sends a keeper command (`remove 1`, `add 1`); returns whether it succeeded.
    func command(_ text: String) async throws -> Bool {
        try await onThread { [self] in
            try input.write(contentsOf: Data((text + "\n").utf8))
            let reply = try RayTestCluster.readLine(output)
            if let nodes = reply["nodes"] as? [String] { self.nodes.withLock { $0 = nodes } }
            return reply["ok"] as? Bool == true
        }
    }
}

/// Runs blocking work on a thread of its own, off the few threads Swift concurrency has.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Processes whose parent is a colocate hosting actor (`ray::WorkerHost`): the Ray workers alive.
func rayHostedWorkerPIDs() -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var out: [Int32] = []
    for e in entries {
        guard let pid = Int32(e), !processIsGone(pid),
              let stat = try? String(contentsOfFile: "/proc/\(e)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, let ppid = Int32(fields[1]),
              let parent = try? String(contentsOfFile: "/proc/\(ppid)/cmdline", encoding: .utf8) else { continue }
        if parent.hasPrefix("ray::WorkerHost") { out.append(pid) }
    }
    return out
}

/// A Ray cluster on the shared test cluster whose workers run the built `colocate worker` with the
/// diagnostic actors.
func makeRayCluster(placementTimeout: Duration = .seconds(60)) async throws -> (Cluster, RayTestCluster) {
    let ray = try await RayTestCluster.shared()
    var options = ClusterOptions()
    options.workerExecutable = try ColocateBinary.require()
    options.workerArguments = ["worker", "--diagnostic-actors"]
    options.workerStartTimeout = .seconds(120)
    options.driverHandlers.on(Echo.self) { call, _ in "driver got '\(call.text)'" }
    var rayOptions = RayOptions()
    rayOptions.python = RayTestCluster.python
    rayOptions.placementTimeout = placementTimeout
    let cluster = try await Cluster.ray(address: ray.address, options: options, rayOptions: rayOptions)
    return (cluster, ray)
}

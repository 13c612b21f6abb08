#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import Compute
import Diagnostics
@testable import Cluster

/// The built `colocate` executable that hosts workers: `$COLOCATE_EXECUTABLE`, else beside the test
/// bundle (`.build*/<triple>/debug/`), else the first `.build*/debug/colocate` walking up from here.
enum ColocateBinary {
    static let path: String? = {
        let fm = FileManager.default
        if let p = ProcessInfo.processInfo.environment["COLOCATE_EXECUTABLE"], fm.isExecutableFile(atPath: p) { return p }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("colocate").path
            if fm.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        var root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        for _ in 0..<4 {
            root = root.deletingLastPathComponent()
            if let entries = try? fm.contentsOfDirectory(atPath: root.path) {
                for e in entries.sorted() where e.hasPrefix(".build") {
                    let candidate = root.appendingPathComponent(e).appendingPathComponent("debug/colocate").path
                    if fm.isExecutableFile(atPath: candidate) { return candidate }
                }
            }
        }
        return nil
    }()

    static func require() throws -> String {
        guard let path else {
            Issue.record("the colocate executable was not found next to the tests; build it (swift build) or set COLOCATE_EXECUTABLE")
            throw ClusterError("colocate executable not found")
        }
        return path
    }
}

/// A local cluster whose workers run the built `colocate worker`, with the diagnostic actors.
func makeCluster(_ devices: DeviceSpec = .cpu(count: 4, capacity: 64 << 20), configure: (inout ClusterOptions) -> Void = { _ in }) throws -> Cluster {
    var options = ClusterOptions()
    options.workerExecutable = try ColocateBinary.require()
    options.workerArguments = DiagnosticActors.workerArguments
    options.cpus = 8
    configure(&options)
    return try Cluster.local(devices: devices, options: options)
}

/// Whether `pid` is gone (or a zombie nobody reaped: it runs no code).
func processIsGone(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
    // "pid (comm) S ...": the state follows the last ')'.
    guard let close = stat.lastIndex(of: ")") else { return true }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state == "Z" || state == "X"
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held. A bound on waiting
/// for something the OS does asynchronously, not a timing assertion.
func eventually(within limit: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

/// Shared memory (a memfd) holding `text`: for the descriptor-passing tests.
func sharedText(_ text: String) throws -> HostMemory {
    let bytes = Array(text.utf8)
    let memory = try HostMemory.allocateShared(byteCount: bytes.count, device: .host)
    memory.baseAddress.copyMemory(from: bytes, byteCount: bytes.count)
    return memory
}

func readText(_ memory: HostMemory) -> String {
    String(decoding: UnsafeRawBufferPointer(start: memory.baseAddress, count: memory.byteCount), as: UTF8.self)
}

/// Runs the built `colocate` with `arguments` (and exactly `environment`, when given) on a thread of
/// its own — its blocking reads must not hold one of the few threads Swift concurrency runs tests on —
/// and returns the exit status and everything it printed.
func runColocate(_ arguments: [String], environment: [String: String]? = nil) async throws -> (status: Int32, output: String) {
    let executable = try ColocateBinary.require()
    return try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            if let environment { process.environment = environment }
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: error)
                return
            }
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            continuation.resume(returning: (process.terminationStatus, text))
        }
        thread.start()
    }
}

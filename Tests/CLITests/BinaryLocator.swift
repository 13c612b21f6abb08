import Foundation

/// The built `colocate` executable that CLI tests run: `$COLOCATE_BINARY`; else `colocate` beside the
/// test bundle (SwiftPM puts both in the same build products folder); else the most recently built
/// `.build*/debug/colocate` (or `.build*/<triple>/debug/colocate`) of the package holding this file.
func colocateBinary(filePath: String = #filePath) -> URL {
    let fm = FileManager.default
    if let path = ProcessInfo.processInfo.environment["COLOCATE_BINARY"] {
        return URL(fileURLWithPath: path)
    }
    let bundle = Bundle.main.bundleURL
    for dir in [bundle, bundle.deletingLastPathComponent()] {
        let candidate = dir.appendingPathComponent("colocate")
        if fm.isExecutableFile(atPath: candidate.path) { return candidate }
    }
    // Walk up to the package root, then look in every scratch folder.
    var root = URL(fileURLWithPath: filePath).deletingLastPathComponent()
    while root.path != "/" && !fm.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
        root = root.deletingLastPathComponent()
    }
    var newest: (url: URL, date: Date)?
    let scratch = (try? fm.contentsOfDirectory(atPath: root.path))?.filter { $0.hasPrefix(".build") } ?? []
    for folder in scratch {
        let base = root.appendingPathComponent(folder)
        let triples = (try? fm.contentsOfDirectory(atPath: base.path)) ?? []
        for dir in [base] + triples.map({ base.appendingPathComponent($0) }) {
            let candidate = dir.appendingPathComponent("debug/colocate")
            guard fm.isExecutableFile(atPath: candidate.path),
                  let date = (try? fm.attributesOfItem(atPath: candidate.path))?[.modificationDate] as? Date
            else { continue }
            if newest == nil || date > newest!.date { newest = (candidate, date) }
        }
    }
    return newest?.url ?? bundle.appendingPathComponent("colocate")
}

/// The binary was not found or could not be started.
struct ColocateLaunchError: Error, CustomStringConvertible {
    var description: String
}

/// Runs the built `colocate` with `args` and waits for it. `env` replaces the environment when given
/// (nil inherits this process's). Output is collected through files, so a chatty child can never
/// block on a full pipe.
func runColocate(_ args: [String], env: [String: String]? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    let binary = colocateBinary()
    guard FileManager.default.isExecutableFile(atPath: binary.path) else {
        throw ColocateLaunchError(description: "colocate binary not found at \(binary.path): run `swift build` first or set COLOCATE_BINARY")
    }
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("colocate-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: tmp) }
    let outURL = tmp.appendingPathComponent("stdout"), errURL = tmp.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
    defer {
        try? out.close()
        try? err.close()
    }

    let process = Process()
    process.executableURL = binary
    process.arguments = args
    if let env { process.environment = env }
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = out
    process.standardError = err
    do {
        try process.run()
    } catch {
        throw ColocateLaunchError(description: "cannot start \(binary.path): \(error)")
    }
    process.waitUntilExit()
    let stdout = String(decoding: try Data(contentsOf: outURL), as: UTF8.self)
    let stderr = String(decoding: try Data(contentsOf: errURL), as: UTF8.self)
    return (process.terminationStatus, stdout, stderr)
}

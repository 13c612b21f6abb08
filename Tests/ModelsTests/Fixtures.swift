import Foundation

/// Locates the Hugging Face golden data in `shared/fixtures`: `$COLOCATE_FIXTURES`, else a
/// `shared/fixtures` inside or beside any folder above this file (the repo is a sibling of `shared/`
/// on developer machines and in CI).
enum Fixtures {
    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "shared/fixtures not found: set COLOCATE_FIXTURES or put shared/ beside the repository"
        }
    }

    static func directory(filePath: String = #filePath) throws -> String {
        let fm = FileManager.default
        if let env = ProcessInfo.processInfo.environment["COLOCATE_FIXTURES"], fm.fileExists(atPath: env) {
            return env
        }
        var dir = URL(fileURLWithPath: filePath).deletingLastPathComponent()
        while dir.path != "/" {
            for candidate in [dir.appendingPathComponent("shared/fixtures"),
                              dir.deletingLastPathComponent().appendingPathComponent("shared/fixtures")]
            where fm.fileExists(atPath: candidate.path) {
                return candidate.standardizedFileURL.path
            }
            dir = dir.deletingLastPathComponent()
        }
        throw Missing()
    }

    /// `relative` under the fixtures directory, e.g. `"opt-tiny/config.json"`.
    static func path(_ relative: String) throws -> String {
        try directory() + "/" + relative
    }
}

/// A fresh temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "colocate-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// SplitMix64: a small seeded generator, so randomized tests are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

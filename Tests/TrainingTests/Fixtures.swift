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

#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The private directory holding a driver's and its workers' sockets:
/// `<parent>/colocate-<uid>-<driverpid>-<random>`, mode 0700, owned by this user. Removed at shutdown;
/// directories left by drivers that died (kill -9) are swept when the next driver starts.
final class SocketDirectory: Sendable {
    let path: String

    private init(path: String) { self.path = path }

    /// Creates a fresh directory under `parent` (default: `$XDG_RUNTIME_DIR` when usable, else /tmp).
    static func create(parent: String? = nil) throws(ClusterError) -> SocketDirectory {
        let base = parent ?? defaultParent
        let uid = getuid()
        sweepStale(in: base, uid: uid)
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let path = "\(base)/colocate-\(uid)-\(getpid())-\(suffix)"
        guard mkdir(path, 0o700) == 0 else { throw ClusterError.errno("cannot create socket directory \(path)") }
        // mkdir's mode is filtered by the umask; make it exactly 0700 and check what we got.
        guard chmod(path, 0o700) == 0 else { throw ClusterError.errno("cannot set mode of \(path)") }
        var st = stat()
        guard lstat(path, &st) == 0, st.st_uid == uid, st.st_mode & 0o7777 == 0o700,
              st.st_mode & S_IFMT == S_IFDIR else {
            throw ClusterError("socket directory \(path) is not a 0700 directory owned by uid \(uid)")
        }
        return SocketDirectory(path: path)
    }

    static var defaultParent: String {
        if let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"], !runtime.isEmpty,
           access(runtime, W_OK | X_OK) == 0 {
            return runtime
        }
        return "/tmp"
    }

    /// Removes the sockets and the directory.
    func remove() {
        SocketDirectory.removeTree(path)
    }

    private static func removeTree(_ path: String) {
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: path) {
            for e in entries { unlink("\(path)/\(e)") }
        }
        rmdir(path)
    }

    /// Removes `colocate-<uid>-<pid>-*` directories of this user whose driver pid no longer exists.
    private static func sweepStale(in base: String, uid: uid_t) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: base) else { return }
        let prefix = "colocate-\(uid)-"
        for e in entries where e.hasPrefix(prefix) {
            let rest = e.dropFirst(prefix.count).split(separator: "-")
            guard rest.count == 2, let pid = pid_t(rest[0]) else { continue }
            guard kill(pid, 0) != 0 && errno == ESRCH else { continue }
            var st = stat()
            let full = "\(base)/\(e)"
            guard lstat(full, &st) == 0, st.st_uid == uid, st.st_mode & S_IFMT == S_IFDIR else { continue }
            removeTree(full)
        }
    }
}

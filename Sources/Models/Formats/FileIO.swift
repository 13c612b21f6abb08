#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed file operation: the path, what was being done and the system's reason, on one line.
public struct FileIOError: Error, CustomStringConvertible, Sendable, Equatable {
    public var path: String
    public var message: String
    /// The `errno` behind the failure, when a system call failed.
    public var code: Int32?
    public var description: String { "\(path): \(message)" }

    init(_ path: String, _ what: String, errno code: Int32? = errno) {
        self.path = path
        self.code = code
        if let code { message = "\(what): \(String(cString: strerror(code)))" } else { message = what }
    }
}

/// Thin wrappers over the file system calls the formats need: whole-file reads of small JSON files,
/// and writes that replace a file atomically (temporary file in the same directory, then `rename`),
/// so that a reader never sees half a checkpoint and a failed write leaves the old file in place.
enum FileIO {
    /// Upper bound for JSON side files (`config.json`, `tokenizer.json`, indexes): far above any real
    /// one, far below what would exhaust memory.
    static let maxJSONFileBytes = 1 << 30

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// What a `stat` mode is, for messages: "a directory", "a FIFO", ….
    static func kindName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: "a regular file"
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        case S_IFLNK: "a symbolic link"
        default: "not a regular file"
        }
    }

    /// Opens `path` for reading only if it is a regular file. `O_NONBLOCK` keeps the open itself from
    /// waiting for a writer when the path is a FIFO; the type is checked on the descriptor (no race
    /// with a rename), and reads of a regular file ignore the flag.
    static func openRegularFile(_ path: String) throws(FileIOError) -> (fd: Int32, size: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw FileIOError(path, "cannot open") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = FileIOError(path, "cannot stat")
            close(fd)
            throw e
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FileIOError(path, "is \(kindName(st.st_mode)), not a regular file", errno: nil)
        }
        return (fd, Int(st.st_size))
    }

    /// Reads a whole regular file; anything else (a FIFO, a device, a directory) is refused before a
    /// byte is read, so that it can neither block nor stream without end.
    static func readFile(_ path: String, maxBytes: Int = maxJSONFileBytes) throws(FileIOError) -> [UInt8] {
        let (fd, size) = try openRegularFile(path)
        defer { close(fd) }
        guard size <= maxBytes else { throw FileIOError(path, "file of \(size) bytes is too large (limit \(maxBytes))", errno: nil) }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError(path, "read failed")
            }
            if n == 0 { break }  // the file shrank under us
            done += n
        }
        if done < size { bytes.removeLast(size - done) }
        return bytes
    }

    /// Throws unless `path` is absent or a regular file: a write-then-rename would replace a symbolic
    /// link, a device node or a FIFO with a regular file (as root, `/dev/null` itself).
    static func checkReplaceable(_ path: String) throws(FileIOError) {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return }
            throw FileIOError(path, "cannot examine the output")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw FileIOError(path, "is \(kindName(st.st_mode)); refusing to replace it (give the path of a regular file or a new one)", errno: nil)
        }
    }

    /// Creates or replaces `path` atomically with what `body` writes. Only a regular file (or
    /// nothing) at `path` is replaced; see ``checkReplaceable(_:)``.
    static func writeAtomically(
        _ path: String, _ body: (inout AtomicFileWriter) throws(FileIOError) -> Void
    ) throws(FileIOError) {
        try checkReplaceable(path)
        let temporary = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileIOError(path, "cannot create temporary file \(temporary)") }
        var writer = AtomicFileWriter(fd: fd, path: path)
        do throws(FileIOError) {
            try body(&writer)
            guard fsync(fd) == 0 else { throw FileIOError(path, "fsync failed") }
            guard close(fd) == 0 else {
                unlink(temporary)
                throw FileIOError(path, "close failed")
            }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let e = FileIOError(path, "cannot rename \(temporary) into place")
            unlink(temporary)
            throw e
        }
    }

    static func writeAtomically(_ path: String, bytes: [UInt8]) throws(FileIOError) {
        try writeAtomically(path) { (w: inout AtomicFileWriter) throws(FileIOError) in
            try withBytes(of: bytes) { (b: UnsafeRawBufferPointer) throws(FileIOError) in try w.write(b) }
        }
    }

    /// Creates `path` (and missing parents) as a directory; an existing directory is fine, an existing
    /// file is an error that says so.
    static func makeDirectories(_ path: String) throws(FileIOError) {
        if isDirectory(path) { return }
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component
            if !isDirectory(prefix) {
                var st = stat()
                if stat(prefix, &st) == 0 {
                    throw FileIOError(prefix, "is \(kindName(st.st_mode)), not a directory; cannot create a directory there", errno: nil)
                }
                guard mkdir(prefix, 0o755) == 0 || errno == EEXIST && isDirectory(prefix) else {
                    throw FileIOError(prefix, "cannot create directory")
                }
            }
            prefix += "/"
        }
    }
}

/// Writes to the temporary file of `FileIO.writeAtomically`.
struct AtomicFileWriter {
    let fd: Int32
    let path: String

    mutating func write(_ bytes: UnsafeRawBufferPointer) throws(FileIOError) {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            // Linux writes at most 0x7ffff000 bytes per call; loop for partial writes and EINTR.
            let n = posixWrite(fd, p, min(left, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError(path, "write failed")
            }
            p += n
            left -= n
        }
    }
}

private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }

/// `Array.withUnsafeBytes` keeping the body's typed error (the standard library's only rethrows).
func withBytes<R, E: Error>(of array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    let result: Result<R, E> = array.withUnsafeBytes { b in Result { () throws(E) -> R in try body(b) } }
    return try result.get()
}

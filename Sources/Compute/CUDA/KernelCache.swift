#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Compiled kernels, in memory and on disk (`~/.cache/colocate/kernels/<hash>.cubin`, or under
/// `$XDG_CACHE_HOME`, or `COLOCATE_KERNEL_CACHE`), keyed by a hash of the source, the options, the
/// target architecture and the NVRTC version. A cache that cannot be written is skipped silently.
enum KernelCache {
    private static let memory = Mutex<[String: NVRTC.Image]>([:])

    static var directory: String? {
        if let dir = environment("COLOCATE_KERNEL_CACHE") { return dir }
        if let xdg = environment("XDG_CACHE_HOME") { return "\(xdg)/colocate/kernels" }
        if let home = environment("HOME") { return "\(home)/.cache/colocate/kernels" }
        return nil
    }

    /// The image for `source` from the cache, else compiled by `nvrtc` and cached.
    static func image(nvrtc: NVRTC, source: String, name: String, architecture: Int, kind: NVRTC.ImageKind) throws(CUDAError) -> NVRTC.Image {
        let key = hash("\(nvrtc.version.major).\(nvrtc.version.minor)|\(kind.rawValue)|\(architecture)|\(name)|\(source)")
        if let cached = memory.withLock({ $0[key] }) { return cached }
        let file = directory.map { "\($0)/\(key).\(kind.rawValue)" }
        if let file, let bytes = readFile(file), !bytes.isEmpty {
            let image = NVRTC.Image(kind: kind, bytes: bytes, log: "")
            memory.withLock { $0[key] = image }
            return image
        }
        let image = try nvrtc.compile(source: source, name: name, architecture: architecture, kind: kind)
        memory.withLock { $0[key] = image }
        if let dir = directory, let file { write(image.bytes, to: file, in: dir) }
        return image
    }

    /// 128-bit FNV-1a (two 64-bit lanes with different offsets), as 32 hex digits: a cache key, not a MAC.
    static func hash(_ text: String) -> String {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325
        var b: UInt64 = 0x6c62_272e_07bb_0142
        for byte in text.utf8 {
            a = (a ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            b = (b ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            b = (b << 7) | (b >> 57)
        }
        func hex(_ v: UInt64) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }
        return hex(a) + hex(b)
    }

    private static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        let s = String(cString: value)
        return s.isEmpty ? nil : s
    }

    private static func readFile(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n > 0 { out += chunk[0..<n] }
            if n < chunk.count { break }
        }
        return ferror(f) == 0 ? out : nil
    }

    /// Writes through a temporary file and a rename, so readers never see half a file.
    private static func write(_ bytes: [UInt8], to path: String, in directory: String) {
        var partial = ""
        for component in directory.split(separator: "/") {
            partial += "/" + component
            mkdir(partial, 0o700)
        }
        let temporary = "\(path).\(getpid()).tmp"
        guard let f = fopen(temporary, "wb") else { return }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, bytes.count, f) }
        fclose(f)
        if written == bytes.count { rename(temporary, path) } else { unlink(temporary) }
    }
}

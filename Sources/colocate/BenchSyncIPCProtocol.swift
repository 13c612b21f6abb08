#if canImport(Glibc)
import Glibc
#endif
import Foundation
import WeightSync

/// What the trainer (parent) of `bench sync-ipc` tells an engine rank (child), one JSON line each.
struct SyncIPCRequest: Codable {
    enum Target: String, Codable {
        /// The engine's weights as one allocation laid out like the trainer's (`CUDAEngineWeights`).
        case flat
        /// One allocation per parameter, as `backend.zeros` makes them.
        case separate
    }
    /// A sync with the whole export (layout included).
    var exported: ExportedWeights?
    /// A sync with the per-sync notice (the layout was sent before).
    var notice: WeightSyncNotice?
    /// Which copy of the engine's weights the sync writes.
    var target: Target?
    /// The byte every trainer weight was filled with, to check the result (outside the timed part).
    var fill: UInt8?
    /// Measure device-to-device copy bandwidth through the IPC mapping instead of syncing.
    var measureCopyBandwidth: Bool?
    /// Check every weight against the export, byte for byte (`mismatches`).
    var verifyAll: Bool?
}

/// An engine rank's answer.
struct SyncIPCReply: Codable {
    /// CLOCK_MONOTONIC nanoseconds when the rank held the new weights (after the stream sync).
    var doneAt: UInt64 = 0
    /// Nanoseconds the rank spent decoding the message, and in `update` (validate/plan, copies, sync).
    var decodeNanoseconds: UInt64 = 0
    var updateNanoseconds: UInt64 = 0
    var copies = 0
    var parameters = 0
    var bytes = 0
    var reusedPlan = false
    /// Copy bandwidth measurement: bytes and the median seconds of a plain D2D copy of them.
    var copyBytes = 0
    var copySeconds = 0.0
    /// False with `error` when the rank failed or its weights are not what the trainer wrote.
    var ok = true
    var error: String?
}

/// CLOCK_MONOTONIC, in nanoseconds: the same clock in every process of the machine, so a rank's
/// completion time can be compared with the trainer's start time.
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Lines from a file descriptor with plain `read(2)` (no buffering layer between the pipe and us).
final class LineReader {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0

    init(fileDescriptor: Int32) { fd = fileDescriptor }

    /// The next line without its newline, or nil at end of input.
    func next() throws -> [UInt8]? {
        while true {
            if let newline = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                if start > 1 << 16 {
                    buffer.removeFirst(start)
                    start = 0
                }
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw CLIError("reading a pipe failed: \(String(cString: strerror(errno)))") }
            if n == 0 { return nil }
            buffer += chunk[0..<n]
        }
    }
}

/// Writes all of `bytes` and a newline to `fd`.
func writeLine(_ bytes: Data, to fd: Int32) throws {
    var line = bytes
    line.append(UInt8(ascii: "\n"))
    try line.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
            let n = write(fd, raw.baseAddress! + done, raw.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw CLIError("writing a pipe failed: \(String(cString: strerror(errno)))") }
            done += n
        }
    }
}

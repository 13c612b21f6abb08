#if canImport(Glibc)
import Glibc
#endif
import Compute
import Foundation
import WeightSync

/// What the trainer (parent) of `bench sync-ipc` tells an engine rank (child), one JSON line each.
struct SyncIPCRequest: Codable {
    enum Target: String, Codable {
        /// The engine's weights as one allocation laid out like the trainer's (`WeightLayout(shardsOf:)`).
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
    /// The trainer already wrote the weights into this rank's buffer (push): nothing to copy.
    var pushed: Bool?
}

/// An engine rank's answer.
struct SyncIPCReply: Codable {
    /// CLOCK_MONOTONIC nanoseconds when the rank held the new weights (after the stream sync).
    var doneAt: UInt64 = 0
    /// Nanoseconds the rank spent decoding the message, and in `update` (validate/plan, copies, sync).
    var decodeNanoseconds: UInt64 = 0
    var updateNanoseconds: UInt64 = 0
    /// Of the update: host time to map, check and plan, and to queue and finish the copies.
    var prepareSeconds = 0.0
    var copyingSeconds = 0.0
    var copies = 0
    var parameters = 0
    var bytes = 0
    var reusedPlan = false
    /// Copy bandwidth measurement: bytes and the median seconds of a plain D2D copy of them.
    var copyBytes = 0
    var copySeconds = 0.0
    /// The same copy at smaller sizes: [bytes, median seconds] pairs.
    var copyCurve: [[Double]]?
    /// GPU time of the copies (events around them), with `--gpu-timing`.
    var gpuCopySeconds: Double?
    /// The rank's first reply: the IPC handle of its flat weights, for a trainer that pushes.
    var weightsHandle: MemoryHandle?
    /// False with `error` when the rank failed or its weights are not what the trainer wrote.
    var ok = true
    var error: String?
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
            guard n >= 0 else { throw BenchmarkError("reading a pipe failed: \(String(cString: strerror(errno)))") }
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
            guard n > 0 else { throw BenchmarkError("writing a pipe failed: \(String(cString: strerror(errno)))") }
            done += n
        }
    }
}

/// The request line of a pushed sync: `P` and the fill byte in hex.
enum PushedLine {
    static let tag = UInt8(ascii: "P")
    static func encode(fill: UInt8) -> Data { Data([tag]) + Data(String(format: "%02x", fill).utf8) }
    static func decode(_ line: [UInt8]) throws -> UInt8 {
        guard line.count == 3, line[0] == tag, let fill = UInt8(String(decoding: line[1...], as: UTF8.self), radix: 16) else {
            throw BenchmarkError("malformed pushed line")
        }
        return fill
    }
}

/// The compact request line of a notice sync: `N` and the hex of [fill, target (0 flat, 1 separate)]
/// followed by `WeightSyncNotice.bytes`. JSON costs ~100 µs to decode on the GPU hosts' cores, a
/// third of the whole sync of a small model; this costs ~1 µs.
enum CompactNoticeLine {
    static let tag = UInt8(ascii: "N")
    private static let digits = Array("0123456789abcdef".utf8)

    static func encode(_ notice: WeightSyncNotice, fill: UInt8, target: SyncIPCRequest.Target) -> Data {
        let payload = [fill, target == .separate ? 1 : 0] + notice.bytes
        var out = Data(capacity: 1 + 2 * payload.count)
        out.append(tag)
        for b in payload {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return out
    }

    static func decode(_ line: [UInt8]) throws -> (notice: WeightSyncNotice, fill: UInt8, target: SyncIPCRequest.Target) {
        func nibble(_ c: UInt8) throws -> UInt8 {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            default: throw BenchmarkError("bad hex digit in a notice line")
            }
        }
        guard line.first == tag, line.count % 2 == 1, line.count >= 5 else { throw BenchmarkError("malformed notice line") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(line.count / 2)
        var i = 1
        while i < line.count {
            bytes.append(try nibble(line[i]) << 4 | nibble(line[i + 1]))
            i += 2
        }
        return (try WeightSyncNotice(bytes: Array(bytes[2...])), bytes[0], bytes[1] == 1 ? .separate : .flat)
    }
}

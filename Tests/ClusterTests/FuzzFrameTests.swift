import Compute
import Foundation
import Testing

@testable import Cluster

/// Frames and call payloads come from other processes: mutated streams are parsed frame by frame
/// as a connection's reader does, and each either parses within the bytes it has or is a protocol
/// error, never a trap or a read past the buffer.
@Suite struct FuzzFrameTests {
    static let iterations = 4000

    static func stream() throws -> [UInt8] {
        let handle = MemoryHandle(deviceUUID: "CPU-1", kind: .cpuSharedMemory, byteCount: 64, offset: 0,
                                  opaque: Array(repeating: 3, count: 24), ownerPID: 99)
        return try Frame(kind: .call, requestID: 7, name: "engine.sync", payload: try WireCodec.encode(handle)).encoded(fdCount: 1)
            + (try Frame(kind: .fdCarrier, requestID: 8, name: "", payload: []).encoded(fdCount: 0))
            + (try Frame(kind: .reply, requestID: 7, name: "", payload: Array("{\"ok\":true}".utf8)).encoded(fdCount: 0))
            + (try Frame(kind: .failure, requestID: 9, name: "", payload: Array("it broke".utf8)).encoded(fdCount: 0))
            + (try Frame(kind: .failure, requestID: 10, name: "", payload: codedFailure.encoded()).encoded(fdCount: 0))
    }

    static let codedFailure = RemoteFailure(type: "Engine.EngineError", code: "asleep", message: "engine rank 0 is asleep: call wakeUp")

    /// `Frame.parse` of the bytes (a plain-throws wrapper: typed-throws closures through
    /// `withUnsafeBytes` crash the 6.3 compiler).
    static func parse(_ bytes: ArraySlice<UInt8>) throws -> (frame: Frame, fdCount: Int, size: Int)? {
        try bytes.withUnsafeBytes { b in try Frame.parse(b) }
    }

    @Test func mutatedStreamsParseWithinBoundsOrFail() throws {
        let seed = try Self.stream()
        var mutator = ByteMutator(seed: 0xF4A3_E5, donors: [seed])
        var frames = 0, errors = 0
        for _ in 0..<Self.iterations {
            let input = mutator.mutated(seed)
            var at = 0
            do {
                while at < input.count {
                    let parsed = try Self.parse(input[at...])
                    guard let (frame, fdCount, size) = parsed else { break }  // incomplete: wait for more bytes
                    #expect(size >= Frame.headerSize && size <= input.count - at)
                    #expect(fdCount <= 255 && frame.payload.count + frame.name.utf8.count == size - Frame.headerSize)
                    // What parses re-encodes to the same bytes.
                    #expect(try frame.encoded(fdCount: fdCount) == Array(input[at..<(at + size)]))
                    at += size
                    frames += 1
                }
            } catch {
                errors += 1
                #expect("\(error)".hasPrefix("protocol error") && !"\(error)".contains("\n"), "\(error)")
            }
        }
        #expect(frames > 0 && errors > 0, "frames \(frames), errors \(errors)")
    }

    @Test func lengthsAtTheLimitsAreProtocolErrors() throws {
        for length in [UInt32.max, UInt32(Frame.maximumLength) + 1, 0, UInt32(Frame.headerSize - 5)] {
            var bytes: [UInt8] = []
            bytes.appendLittleEndian(length)
            bytes += Array(repeating: 1, count: 32)
            #expect(throws: ClusterError.self) { _ = try Self.parse(bytes[...]) }
        }
        // A name running past the frame, and a name that is not UTF-8.
        var frame = try Frame(kind: .call, requestID: 1, name: "ab", payload: []).encoded(fdCount: 0)
        frame[14] = 200
        #expect { _ = try Self.parse(frame[...]) } throws: { "\($0)".contains("name length 200") }
        frame = try Frame(kind: .call, requestID: 1, name: "ab", payload: []).encoded(fdCount: 0)
        frame[Frame.headerSize] = 0xFF
        #expect { _ = try Self.parse(frame[...]) } throws: { "\($0)".contains("not UTF-8") }
    }

    @Test func failurePayloadsKeepTypeAndCodeAndReadOlderAndNewerPeers() throws {
        // This version: type, code and message round-trip, whatever the message holds.
        for failure in [Self.codedFailure, RemoteFailure(message: "plain \u{0}\"quoted\"\n✓"),
                        RemoteFailure(type: "Cluster.ClusterError", code: "timedOut", message: "")] {
            #expect(RemoteFailure.decode(failure.encoded()) == failure)
            #expect(failure.encoded().first == RemoteFailure.marker)
        }
        // A peer before version 1 sends the message alone, as UTF-8: no code.
        #expect(RemoteFailure.decode(Array("it broke".utf8)) == RemoteFailure(message: "it broke"))
        #expect(RemoteFailure.decode([]) == RemoteFailure(message: ""))
        // A later version's fields this reader does not know are skipped; those it knows are read.
        let newer = [RemoteFailure.marker] + Array(#"{"v":2,"type":"Engine.EngineError","code":"asleep","message":"m","retryAfter":[1,2]}"#.utf8)
        let read = RemoteFailure.decode(newer)
        #expect(read.version == 2 && read.type == "Engine.EngineError" && read.code == "asleep" && read.message == "m")
        // A message too long for a frame is cut, and still arrives.
        let long = RemoteFailure(message: String(repeating: "é", count: RemoteFailure.maximumMessageBytes))
        let cut = RemoteFailure.decode(long.encoded())
        #expect(cut.message.utf8.count <= RemoteFailure.maximumMessageBytes + 3 && cut.message.hasPrefix("éé"))
        #expect(try Frame(kind: .failure, requestID: 1, name: "", payload: long.encoded()).encoded(fdCount: 0).count < Frame.maximumLength)
    }

    @Test func mutatedFailurePayloadsAlwaysMakeAFailure() throws {
        let seed = Self.codedFailure.encoded()
        var mutator = ByteMutator(seed: 0xFA11_ED, donors: [seed, Array(#"{"v":1e999,"code":[],"type":null}"#.utf8)])
        var coded = 0, unreadable = 0, plain = 0
        for _ in 0..<Self.iterations {
            let input = mutator.mutated(seed)
            let failure = RemoteFailure.decode(input)  // total: no throw, no trap
            if input.first != RemoteFailure.marker {
                plain += 1
                #expect(failure == RemoteFailure(message: String(decoding: input, as: UTF8.self)))
            } else if failure.message.hasPrefix("unreadable failure from the peer") {
                unreadable += 1
                #expect(failure.code == nil && failure.type == nil)
            } else if failure.code != nil {
                coded += 1
            }
        }
        #expect(coded > 0 && unreadable > 0, "coded \(coded), unreadable \(unreadable), plain \(plain)")
    }

    @Test func mutatedPayloadsDecodeOrFailWithAClusterError() throws {
        let handle = MemoryHandle(deviceUUID: "CPU-1", kind: .cpuSharedMemory, byteCount: 64, offset: 8,
                                  opaque: Array(repeating: 3, count: 24), ownerPID: 99)
        let seed = try WireCodec.encode(handle)
        var mutator = ByteMutator(seed: 0x3C0D_EC, donors: [seed, Array("[[[[{\"a\":1e999}]]]]".utf8)])
        var decoded = 0
        for _ in 0..<Self.iterations {
            do {
                let h = try WireCodec.decode(MemoryHandle.self, from: mutator.mutated(seed), what: "fuzz")
                decoded += 1
                #expect(h.offset >= 0 && h.byteCount >= 0 && !h.offset.addingReportingOverflow(h.byteCount).overflow)
            } catch {
                #expect("\(error)".hasPrefix("cannot decode fuzz"))
            }
        }
        #expect(decoded > 0)
    }
}

import Compute
import Foundation
import Testing

@testable import Cluster

/// The binary payload codec: every Codable shape round-trips, it reads what JSON reads the same way,
/// it tolerates a newer peer's extra fields, and what is not a well-formed payload is a one-line
/// `ClusterError`, never a trap.
@Suite struct BinaryPayloadTests {
    enum Mode: String, Codable, Equatable { case fast, careful }
    enum Shape: Codable, Equatable {
        case point
        case circle(radius: Double)
        case polygon([Int], closed: Bool)
    }
    struct Inner: Codable, Equatable {
        var name: String
        var weight: Float
    }
    struct Everything: Codable, Equatable {
        var int = Int.min
        var int8: Int8 = -128
        var int16: Int16 = 32767
        var int32: Int32 = -7
        var int64 = Int64.max
        var uint = UInt.max
        var uint8: UInt8 = 255
        var uint16: UInt16 = 0
        var uint32 = UInt32.max
        var uint64 = UInt64.max
        var double = -0.0
        var infinity = Double.infinity
        var float: Float = 1.5e-30
        var flag = true
        var text = "plain \u{0}\"quoted\"\n✓ 日本"
        var empty = ""
        var bytes: [UInt8] = [0, 1, 0xC1, 0xFF]
        var noBytes: [UInt8] = []
        var noStrings: [String] = []
        var floats: [Float] = [1, -2, .greatestFiniteMagnitude]
        var optionalSet: Int? = 3
        var optionalNil: String? = nil
        var nestedOptional: Inner? = Inner(name: "n", weight: 2)
        var inners = [Inner(name: "a", weight: 1), Inner(name: "", weight: -1)]
        var byName = ["x": 1, "y": -2]
        var byNumber = [7: "seven", -1: "minus one"]
        var matrix: [[Int]] = [[], [1], [2, 3]]
        var mode = Mode.careful
        var shapes: [Shape] = [.point, .circle(radius: 2), .polygon([1, 2, 3], closed: true)]
        var emptyValue = Empty()
        var uuid = UUID(uuidString: "2F1C3D6E-1B2A-4C5D-8E9F-A0B1C2D3E4F5")!
    }

    static func binary<T: Encodable>(_ value: T) throws -> [UInt8] { try BinaryEncoder().encode(value) }
    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T { try BinaryDecoder().decode(type, from: bytes) }

    @Test func everyShapeRoundTrips() throws {
        let value = Everything()
        let bytes = try Self.binary(value)
        #expect(bytes.prefix(2) == [BinaryPayload.marker, BinaryPayload.version])
        #expect(try Self.decode(Everything.self, bytes) == value)
        // Through the codec the connection uses, and read the same as its JSON.
        let payload = try WireCodec.encodePayload(value)
        #expect(try WireCodec.decode(Everything.self, from: payload, what: "test") == value)
        // JSON reads the same value the same way (JSON has no infinity: that one field is finite there).
        var finite = value
        finite.infinity = 1
        #expect(try WireCodec.decode(Everything.self, from: try WireCodec.encode(finite), what: "test") == finite)
        // NaN is not equal to itself: compared by bit pattern.
        let nan = try Self.decode(Double.self, try Self.binary(Double.nan))
        #expect(nan.bitPattern == Double.nan.bitPattern)
    }

    @Test func topLevelValuesOfEveryKindRoundTrip() throws {
        #expect(try Self.decode(Int.self, try Self.binary(-5)) == -5)
        #expect(try Self.decode(String.self, try Self.binary("s")) == "s")
        #expect(try Self.decode([Int].self, try Self.binary([1, 2])) == [1, 2])
        #expect(try Self.decode(Empty.self, try Self.binary(Empty())) == Empty())
        #expect(try Self.decode(Int?.self, try Self.binary(Int?.none)) == nil)
        #expect(try Self.decode([UInt8].self, try Self.binary([UInt8](repeating: 9, count: 300))) == [UInt8](repeating: 9, count: 300))
    }

    @Test func theClustersOwnMessagesRoundTrip() throws {
        let handle = MemoryHandle(deviceUUID: "CPU-1", kind: .cpuSharedMemory, byteCount: 64, offset: 8,
                                  opaque: Array(repeating: 3, count: 24), ownerPID: 99)
        #expect(try Self.decode(MemoryHandle.self, try Self.binary(handle)) == handle)
        let hello = InitializeActor(actorType: "Trainer", config: #"{"a":1}"#, rank: 1, worldSize: 2, groupName: nil,
                                    peers: [ActorAddress(name: "x", path: "/tmp/x.sock", tcp: "tcp://h:1", host: nil)])
        let read = try Self.decode(InitializeActor.self, try Self.binary(hello))
        #expect(read.config == hello.config && read.peers == hello.peers && read.groupName == nil && read.rank == 1)
    }

    /// A later version adds fields: this reader skips them; a field it expects but that is missing
    /// and optional reads as nil.
    @Test func newerAndOlderPeersAreRead() throws {
        struct V1: Codable, Equatable { var a: Int; var b: String? }
        struct V2: Codable { var a: Int; var extra: [String: [Double]]; var c: Inner }
        let read = try Self.decode(V1.self, try Self.binary(V2(a: 4, extra: ["k": [1, 2]], c: Inner(name: "z", weight: 0))))
        #expect(read == V1(a: 4, b: nil))
        #expect { _ = try Self.decode(V2.self, try Self.binary(V1(a: 1, b: "x"))) } throws: {
            WireCodec.describe($0).contains("no value for key 'extra'")
        }
    }

    @Test func typeMismatchesAndRangesAreErrorsThatSayWhere() throws {
        struct Small: Codable { var level: Int8 }
        struct Big: Codable { var level: Int }
        let error = try #require(throws: ClusterError.self) {
            try WireCodec.decode(Small.self, from: try WireCodec.encodePayload(Big(level: 300)), what: "the level")
        }
        #expect(error.message.hasPrefix("cannot decode the level as Small: the integer 300 does not fit Int8") && error.message.contains("at 'level'"))
        #expect(!error.message.contains("\n"))
        struct Named: Codable { var level: String }
        #expect { try WireCodec.decode(Named.self, from: try WireCodec.encodePayload(Big(level: 1)), what: "x") } throws: {
            "\($0)".contains("expected String, found a value tagged signed")
        }
    }

    @Test func truncatedPayloadsFailAtEveryLength() throws {
        let bytes = try Self.binary(Everything())
        for n in 0..<bytes.count {
            let error = try #require(throws: ClusterError.self) { try WireCodec.decode(Everything.self, from: Array(bytes.prefix(n)), what: "cut") }
            #expect(error.message.hasPrefix("cannot decode cut") && !error.message.contains("\n"), "\(error)")
        }
    }

    @Test func malformedPayloadsAreNamedErrors() throws {
        func message(_ bytes: [UInt8]) -> String {
            do {
                _ = try Self.decode(Everything.self, bytes)
                return "decoded"
            } catch {
                return WireCodec.describe(error)
            }
        }
        let good = try Self.binary(Inner(name: "ab", weight: 1))
        #expect(message([BinaryPayload.marker]).contains("not a binary payload"))
        #expect(message([BinaryPayload.marker, 9] + good.dropFirst(2)).contains("version 9"))
        #expect(message(good + [0]).contains("1 bytes follow the value"))
        #expect(message([BinaryPayload.marker, 1, 0x7E]).contains("unknown value tag 0x7e"))
        // A string that is not UTF-8.
        var bad = try Self.binary("ab")
        bad[bad.count - 1] = 0xFF
        #expect { _ = try Self.decode(String.self, bad) } throws: { WireCodec.describe($0).contains("not UTF-8") }
        // An integer of more than 64 bits, and a length larger than the payload.
        #expect { _ = try Self.decode(UInt64.self, [BinaryPayload.marker, 1, 0x04] + Array(repeating: 0xFF, count: 9) + [0x7F]) } throws: {
            WireCodec.describe($0).contains("longer than 64 bits")
        }
        #expect { _ = try Self.decode(String.self, [BinaryPayload.marker, 1, 0x07, 0xFF, 0xFF, 0x03, 0x61]) } throws: {
            WireCodec.describe($0).contains("truncated")
        }
        // Arrays nested deeper than the limit: refused before any recursion runs out of stack.
        let depth = BinaryPayload.maximumDepth + 10
        let level: [UInt8] = [0x09, 1, 0, 0, 0]
        let deep: [UInt8] = [BinaryPayload.marker, 1] + Array(repeating: level, count: depth).flatMap { $0 } + [0x00]
        #expect { _ = try Self.decode([Int].self, deep) } throws: { WireCodec.describe($0).contains("nested more than") }
        // A count far larger than the bytes: an error, not an allocation of that size.
        #expect { _ = try Self.decode([Int].self, [BinaryPayload.marker, 1, 0x09, 0xFF, 0xFF, 0xFF, 0xFF]) } throws: {
            WireCodec.describe($0).contains("truncated")
        }
    }

    /// An `encode(to:)` that writes to a container after a later one was opened cannot be laid out
    /// in place: it is refused, not sent corrupt.
    @Test func outOfOrderEncodingIsRefused() throws {
        struct Interleaved: Encodable {
            enum K: String, CodingKey { case a, b }
            func encode(to encoder: any Encoder) throws {
                var outer = encoder.container(keyedBy: K.self)
                var first = outer.nestedUnkeyedContainer(forKey: .a)
                try first.encode(1)
                try outer.encode(2, forKey: .b)
                try first.encode(3)  // `first` was closed when `outer` moved on
            }
        }
        #expect { _ = try Self.binary(Interleaved()) } throws: { WireCodec.describe($0).contains("written after its parent moved on") }
        // Nested containers used in order are fine, and a super encoder left unused is an empty value.
        struct Nested: Codable, Equatable {
            enum K: String, CodingKey { case a, b, c }
            var a: [Int], b: Int
            init(a: [Int], b: Int) { self.a = a; self.b = b }
            func encode(to encoder: any Encoder) throws {
                var outer = encoder.container(keyedBy: K.self)
                var list = outer.nestedUnkeyedContainer(forKey: .a)
                for x in a { try list.encode(x) }
                _ = outer.superEncoder(forKey: .c)
                try outer.encode(b, forKey: .b)
            }
        }
        let value = Nested(a: [1, 2], b: 3)
        #expect(try Self.decode(Nested.self, try Self.binary(value)) == value)
    }

    /// A subclass and its superclass encode into one encoder, each through its own keyed container.
    @Test func classHierarchiesShareOneKeyedContainer() throws {
        class Base: Codable {
            var id = 1
            init() {}
        }
        final class Derived: Base {
            var label = "d"
            enum K: String, CodingKey { case label }
            override init() { super.init() }
            required init(from decoder: any Decoder) throws {
                label = try decoder.container(keyedBy: K.self).decode(String.self, forKey: .label)
                try super.init(from: decoder)
            }
            override func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: K.self)
                try c.encode(label, forKey: .label)
                try super.encode(to: encoder)
            }
        }
        let value = Derived()
        value.id = 7
        value.label = "seven"
        let read = try Self.decode(Derived.self, try Self.binary(value))
        #expect(read.id == 7 && read.label == "seven")
    }

    @Test func mutatedPayloadsDecodeOrFailWithAClusterError() throws {
        let seeds = [try Self.binary(Everything()),
                     try Self.binary(MemoryHandle(deviceUUID: "CPU-1", kind: .cpuSharedMemory, byteCount: 64, offset: 8,
                                                  opaque: Array(repeating: 3, count: 24), ownerPID: 99))]
        var mutator = ByteMutator(seed: 0xB1_7A_C0, donors: seeds)
        var decoded = 0, failed = 0
        for i in 0..<FuzzFrameTests.iterations {
            let input = mutator.mutated(seeds[i % 2])
            do {
                if i % 2 == 0 {
                    _ = try WireCodec.decode(Everything.self, from: input, what: "fuzz")
                } else {
                    let h = try WireCodec.decode(MemoryHandle.self, from: input, what: "fuzz")
                    #expect(h.offset >= 0 && h.byteCount >= 0 && !h.offset.addingReportingOverflow(h.byteCount).overflow)
                }
                decoded += 1
            } catch {
                failed += 1
                #expect("\(error)".hasPrefix("cannot decode fuzz") && !"\(error)".contains("\n"), "\(error)")
            }
        }
        #expect(decoded > 0 && failed > 0, "decoded \(decoded), failed \(failed)")
    }
}

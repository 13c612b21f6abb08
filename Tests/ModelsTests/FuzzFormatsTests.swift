import Compute
import Foundation
import Testing

@testable import Models

/// Mutation fuzzing of every parser of files that come from outside: JSON, safetensors headers,
/// config.json and tokenizer.json. A fixed seed and a fixed count of inputs per parser; the property
/// is that each input is either rejected with the parser's error or accepted as something valid,
/// and that nothing traps (a trap ends the test process).
@Suite struct FuzzFormatsTests {
    static let iterations = 3000

    static func fixtureBytes(_ relative: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Fixtures.path(relative))))
    }

    /// Valid JSON documents of the kinds the formats read.
    static func jsonSeeds() throws -> [[UInt8]] {
        try ["llama-tiny/config.json", "opt-tiny/config.json", "qwen2-tiny/config.json", "tokenizer/golden.json"].map(fixtureBytes)
            + [Array(#"{"a":[1,-2.5e-3,true,false,null,"\u00e9\n",{"b":{}}],"n":9223372036854775807,"m":-9223372036854775808}"#.utf8)]
    }

    @Test func jsonValueRejectsOrRoundTripsMutatedDocuments() throws {
        let seeds = try Self.jsonSeeds()
        var mutator = ByteMutator(seed: 0x15_0A_11CE, donors: seeds)
        var accepted = 0, rejected = 0
        for i in 0..<Self.iterations {
            let input = mutator.mutated(seeds[i % seeds.count])
            do {
                let value = try JSONValue.parse(input)
                accepted += 1
                // What is accepted is representable: it writes and reads back as the same value.
                let again = try JSONValue.parse(Array(value.serialized().utf8))
                #expect(again == value, "round trip of \(String(decoding: input, as: UTF8.self).prefix(200))")
            } catch {
                rejected += 1
                #expect(!"\(error)".contains("\n"))
            }
        }
        #expect(accepted > 0 && rejected > 0, "accepted \(accepted), rejected \(rejected)")
    }

    @Test func jsonValueRejectsWhatItCannotRepresent() throws {
        for text in ["1e999", "-1e400", "[1, 2e308]", #"{"x": 1E+999}"#, String(repeating: "9", count: 5000)] {
            #expect(throws: JSONParseError.self, "\(text.prefix(40))") { try JSONValue.parse(Array(text.utf8)) }
        }
        // Deep nesting is an error, not a stack overflow, at any depth.
        for depth in [257, 100_000] {
            let deep = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            #expect(throws: JSONParseError.self) { try JSONValue.parse(Array(deep.utf8)) }
            let objects = String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
            #expect(throws: JSONParseError.self) { try JSONValue.parse(Array(objects.utf8)) }
        }
        // Integers past 64 bits are still numbers (doubles), as Python's json reads them as floats would.
        #expect(try JSONValue.parse(Array("18446744073709551616".utf8)) == .double(18446744073709551616))
        #expect(try JSONValue.parse(Array("-9223372036854775808".utf8)) == .int(Int.min))
    }

    @Test func safeTensorsHeaderRejectsOrDescribesMutatedFiles() throws {
        let seeds = try ["opt-tiny/golden.safetensors", "llama-tiny/model.safetensors"].map { path -> [UInt8] in
            // The header and a little data: mutations land in the part the parser reads.
            let bytes = try Self.fixtureBytes(path)
            let headerLength = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
            return Array(bytes[0..<(8 + headerLength)])
        }
        var mutator = ByteMutator(seed: 0x5AFE_7E45, donors: seeds)
        var accepted = 0, kinds = Set<SafeTensorsError.Kind>()
        for i in 0..<Self.iterations {
            let input = mutator.mutated(seeds[i % seeds.count])
            switch Self.parseHeader(input) {
            case .success(let header):
                accepted += 1
                var end = header.dataStart
                for t in header.tensors {
                    #expect(t.byteRange.lowerBound == end && t.byteRange.count == t.elementCount * t.dtype.byteSize)
                    end = t.byteRange.upperBound
                }
                #expect(end == input.count)
            case .failure(let error):
                kinds.insert(error.kind)
                #expect(!error.description.contains("\n"))
            }
        }
        #expect(kinds.count >= 6, "\(kinds)")
        _ = accepted
    }

    static func parseHeader(_ bytes: [UInt8]) -> Result<SafeTensorsHeader, SafeTensorsError> {
        bytes.withUnsafeBytes { b in Result { () throws(SafeTensorsError) in try SafeTensorsHeader(file: b, path: "fuzz") } }
    }

    @Test func configJSONIsRejectedOrParsedWhenMutated() throws {
        let seeds = try ["llama-tiny/config.json", "opt-tiny/config.json", "qwen2-tiny/config.json",
                         "rope/qwen2-tiny-rope-yarn/config.json", "rope/llama-tiny-rope-llama3/config.json"].map(Self.fixtureBytes)
        var mutator = ByteMutator(seed: 0xC0F1_6000, donors: seeds)
        var accepted = 0, rejected = 0
        for i in 0..<Self.iterations {
            do {
                _ = try ModelConfig(json: mutator.mutated(seeds[i % seeds.count]))
                accepted += 1
            } catch {
                rejected += 1
                #expect(!"\(error)".contains("\n"))
            }
        }
        #expect(accepted > 0 && rejected > 0, "accepted \(accepted), rejected \(rejected)")
    }

    @Test func tokenizerJSONIsRejectedOrParsedWhenMutated() throws {
        let seed = try Self.fixtureBytes("tokenizer/tokenizer.json")
        var mutator = ByteMutator(seed: 0x70CE_2000, donors: [seed])
        var accepted = 0, rejected = 0
        for _ in 0..<Self.iterations {
            do {
                let tokenizer = try Tokenizer(json: mutator.mutated(seed))
                accepted += 1
                // What loads must also work.
                _ = try tokenizer.decode(tokenizer.encode("Hello, world"))
            } catch {
                rejected += 1
                #expect(!"\(error)".contains("\n"))
            }
        }
        #expect(accepted > 0 && rejected > 0, "accepted \(accepted), rejected \(rejected)")
    }
}

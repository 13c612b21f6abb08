import Compute
import Foundation
import Testing

@testable import Models

/// Writes a raw safetensors file: the u64 length of `header` (or `length`), the header, then `data`.
private func writeRaw(_ path: String, header: String, data: [UInt8] = [], length: UInt64? = nil) throws {
    var bytes: [UInt8] = []
    let h = Array(header.utf8)
    withUnsafeBytes(of: (length ?? UInt64(h.count)).littleEndian) { bytes += $0 }
    bytes += h + data
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Expects reading `path` to fail with `kind`, naming the file and (when given) the tensor.
private func expectFailure(
    _ kind: SafeTensorsError.Kind, header: String, data: [UInt8] = [], length: UInt64? = nil, tensor: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let dir = try TemporaryDirectory()
    defer { dir.remove() }
    let path = dir.file("bad.safetensors")
    try writeRaw(path, header: header, data: data, length: length)
    do {
        _ = try SafeTensorsFile(path: path)
        Issue.record("expected \(kind), but the file was accepted", sourceLocation: sourceLocation)
    } catch {
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.hasPrefix(path), sourceLocation: sourceLocation)
        #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
        if let tensor {
            #expect(error.tensor == tensor, sourceLocation: sourceLocation)
            #expect(error.description.contains("'\(tensor)'"), sourceLocation: sourceLocation)
        }
    }
}

private func bytes(of t: Tensor) -> [UInt8] {
    Array(UnsafeRawBufferPointer(start: t.rawPointer, count: t.byteCount))
}

@Suite struct SafeTensorsTests {
    /// One tensor of every dtype; the u8 of odd length leaves the tensors after it misaligned.
    static func sampleTensors() throws -> [(name: String, tensor: Tensor)] {
        let f32 = Tensor([1.5, -2, 3.25, 0, 1e-3, -7], shape: [2, 3])
        let f16 = try f32.converted(to: .f16).reshaped([6])
        let bf16 = try f32.converted(to: .bf16).reshaped([3, 2])
        let i32 = Tensor(int32: [1, -2, 3, Int32.max, Int32.min], shape: [5])
        let i64 = try Tensor.zeros([2, 2], dtype: .i64)
        for (i, v) in [Int64.min, -1, 0, Int64.max].enumerated() { i64.pointer(Int64.self)[i] = v }
        let u8 = try Tensor.zeros([7], dtype: .u8)
        for i in 0..<7 { u8.pointer(UInt8.self)[i] = UInt8(i * 40) }
        let empty = try Tensor.zeros([0, 3], dtype: .f32)
        return [("a.f32", f32), ("b.f16", f16), ("c.bf16", bf16), ("d.i32", i32), ("e.i64", i64),
                ("f.u8", u8), ("g.after_u8.f32", f32), ("h.empty", empty), ("i.scalar", Tensor([42], shape: []))]
    }

    @Test func roundTripOfEveryDType() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("all.safetensors")
        let tensors = try Self.sampleTensors()
        try SafeTensorsWriter.write(tensors, metadata: ["format": "pt", "note": "ünïcode"], to: path)

        let file = try SafeTensorsFile(path: path)
        #expect(file.tensorNames == tensors.map(\.name))
        #expect(file.metadata == ["format": "pt", "note": "ünïcode"])
        for (name, original) in tensors {
            let info = try #require(file.info(name))
            #expect(info.dtype == original.dtype)
            #expect(info.shape == original.shape)
            #expect(info.byteRange.count == original.byteCount)
            let loaded = try file.tensor(name)
            #expect(loaded.dtype == original.dtype && loaded.shape == original.shape)
            #expect(bytes(of: loaded) == bytes(of: original), "\(name)")
        }
        #expect(try file.tensor("a.f32").floats() == [1.5, -2, 3.25, 0, 1e-3, -7])
        #expect(try file.tensor("c.bf16").floats() == [1.5, -2, 3.25, 0, BFloat16(1e-3).float, -7])
        #expect(try file.tensor("e.i64").integers() == [Int(Int64.min), -1, 0, Int(Int64.max)])
    }

    @Test func headerIsPaddedWithSpacesToEightBytes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("padded.safetensors")
        try SafeTensorsWriter.write([("x", Tensor([1, 2, 3], shape: [3]))], to: path)
        let raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let length = Int(raw[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        #expect((8 + length) % 8 == 0)
        let header = String(decoding: raw[8..<(8 + length)], as: UTF8.self)
        #expect(header.hasPrefix(#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}"#))
        #expect(header.drop { $0 != "}" }.dropFirst(2).allSatisfy { $0 == " " })
        #expect(raw.count == 8 + length + 12)
        // No __metadata__ when none is given (Hugging Face's reader returns None then).
        #expect(!header.contains("__metadata__"))
    }

    @Test func alignedTensorsAreViewsOfTheMappingAndMisalignedOnesAreCopies() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("views.safetensors")
        try SafeTensorsWriter.write(try Self.sampleTensors(), to: path)
        let file = try SafeTensorsFile(path: path)
        let aligned = try file.tensor("a.f32")
        #expect(aligned.memory === file.memory)
        #expect(aligned.byteOffset == file.info("a.f32")!.byteRange.lowerBound)
        // 7 bytes of u8 precede it, so its data is not 4-byte aligned.
        let info = try #require(file.info("g.after_u8.f32"))
        #expect(info.byteRange.lowerBound % 4 != 0)
        let copied = try file.tensor("g.after_u8.f32")
        #expect(copied.memory !== file.memory)
        #expect(Int(bitPattern: copied.rawPointer) % 4 == 0)
        #expect(copied.floats() == aligned.floats())
    }

    @Test func writingIntoAViewDoesNotChangeTheFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("cow.safetensors")
        try SafeTensorsWriter.write([("w", Tensor([1, 2, 3, 4], shape: [4]))], to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let file = try SafeTensorsFile(path: path)
        let view = try file.tensor("w")
        view.pointer(Float.self)[0] = 99
        #expect(try file.tensor("w").floats() == [99, 2, 3, 4])  // the mapping sees the write
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        #expect(try SafeTensorsFile(path: path).tensor("w").floats() == [1, 2, 3, 4])
    }

    @Test func viewsKeepTheMappingAlive() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("alive.safetensors")
        try SafeTensorsWriter.write([("w", Tensor([5, 6], shape: [2]))], to: path)
        let view = try SafeTensorsFile(path: path).tensor("w")  // the file object is gone after this line
        #expect(view.floats() == [5, 6])
    }

    @Test func readsTheFixtureCheckpoints() throws {
        let opt = try SafeTensorsFile(path: Fixtures.path("opt-tiny/model.safetensors"))
        #expect(opt.tensorNames.count == 36)
        #expect(opt.metadata == ["format": "pt"])
        let positions = try opt.tensor("model.decoder.embed_positions.weight")
        #expect(positions.shape == [130, 64] && positions.dtype == .f32)
        #expect(Array(positions.floats().prefix(3)) == [-0.020558349788188934, -0.007225427310913801, -0.01573411002755165])
        #expect(abs(positions.floats().reduce(0.0) { $0 + Double($1) } - -0.8805040528675363) < 1e-5)

        let prompts: [(String, [Int])] = [
            ("opt-tiny", [383, 198, 141, 403, 308, 327, 382, 134]),
            ("llama-tiny", [338, 173, 408, 135, 163, 277, 433, 109]),
            ("qwen2-tiny", [168, 404, 243, 335, 71, 53, 72, 284]),
        ]
        for (model, prompt) in prompts {
            let golden = try SafeTensorsFile(path: Fixtures.path("\(model)/golden.safetensors"))
            let ids = try golden.tensor("generate_prompt")
            #expect(ids.dtype == .i64 && ids.shape == [1, 8])
            #expect(ids.integers() == prompt, "\(model)")
            #expect(golden.metadata.isEmpty)
        }
    }

    @Test func writerRefusesWhatItCannotWrite() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("refused.safetensors")
        let t = Tensor([1], shape: [1])
        for (tensors, name) in [([("x", t), ("x", t)], "x"), ([("__metadata__", t)], "__metadata__")] {
            do {
                try SafeTensorsWriter.write(tensors, to: path)
                Issue.record("accepted \(name)")
            } catch {
                #expect(error.kind == .unwritableTensor && error.tensor == name)
            }
        }
        #expect(!FileManager.default.fileExists(atPath: path))
        // A failed write leaves no temporary files behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test func writeFailureIsReported() throws {
        do {
            try SafeTensorsWriter.write([("x", Tensor([1], shape: [1]))], to: "/nonexistent-dir/x.safetensors")
            Issue.record("write into a missing directory succeeded")
        } catch {
            #expect(error.kind == .writeFailed)
            #expect(error.description.contains("/nonexistent-dir/x.safetensors"))
        }
    }
}

/// One test per validation rule: each malformed input gives its own error kind.
@Suite struct SafeTensorsValidationTests {
    static let good = #""dtype":"F32","shape":[2],"data_offsets":[0,8]"#

    @Test func missingFile() throws {
        let path = NSTemporaryDirectory() + "no-such-file-\(UUID().uuidString).safetensors"
        #expect { try SafeTensorsFile(path: path) } throws: { ($0 as? SafeTensorsError)?.kind == .cannotOpen }
    }

    @Test func directoryIsNotAFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect { try SafeTensorsFile(path: dir.path) } throws: { ($0 as? SafeTensorsError)?.kind == .cannotOpen }
    }

    @Test func fileShorterThanTheLengthField() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("short.safetensors")
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect { try SafeTensorsFile(path: path) } throws: { ($0 as? SafeTensorsError)?.kind == .fileTooSmall }
        try Data().write(to: URL(fileURLWithPath: path))
        #expect { try SafeTensorsFile(path: path) } throws: { ($0 as? SafeTensorsError)?.kind == .fileTooSmall }
    }

    @Test func headerLengthOverTheLimit() throws {
        try expectFailure(.headerTooLarge, header: "{}", length: 100_000_001)
        try expectFailure(.headerTooLarge, header: "{}", length: UInt64.max)
    }

    @Test func headerLengthPastTheEndOfTheFile() throws {
        try expectFailure(.headerBeyondFile, header: "{}", length: 3)
        try expectFailure(.headerBeyondFile, header: "{}", data: [0, 0], length: 5)
    }

    @Test func headerThatIsNotUTF8() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("latin1.safetensors")
        var raw: [UInt8] = [6, 0, 0, 0, 0, 0, 0, 0]
        raw += Array(#"{"é":"#.utf8).prefix(2) + [0xE9, 0x22, 0x3A, 0x7D]  // {"\xE9":}
        try Data(raw).write(to: URL(fileURLWithPath: path))
        #expect { try SafeTensorsFile(path: path) } throws: { ($0 as? SafeTensorsError)?.kind == .headerNotUTF8 }
    }

    @Test func headerThatIsNotJSON() throws {
        try expectFailure(.invalidJSON, header: #"{"a": "#)
        try expectFailure(.invalidJSON, header: #"{"a": {}} trailing"#)
        try expectFailure(.invalidJSON, header: #"{"a":{\#(Self.good)},"a":{\#(Self.good)}}"#, data: .init(repeating: 0, count: 8))
    }

    @Test func headerThatIsNotAnObject() throws {
        try expectFailure(.headerNotObject, header: "[1, 2]")
        try expectFailure(.headerNotObject, header: "\"x\"")
    }

    @Test func entryThatIsNotATensorDescription() throws {
        try expectFailure(.invalidEntry, header: #"{"w": 5}"#, tensor: "w")
        try expectFailure(.invalidEntry, header: #"{"w": {"shape":[2],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8), tensor: "w")
        try expectFailure(.invalidEntry, header: #"{"w": {"dtype":"F32","data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8), tensor: "w")
        try expectFailure(.invalidEntry, header: #"{"w": {"dtype":"F32","shape":[2]}}"#, data: .init(repeating: 0, count: 8), tensor: "w")
        try expectFailure(.invalidEntry, header: #"{"w": {"dtype":4,"shape":[2],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8), tensor: "w")
    }

    @Test func unknownDType() throws {
        try expectFailure(.unknownDType, header: #"{"w": {"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8), tensor: "w")
        try expectFailure(.unknownDType, header: #"{"w": {"dtype":"f32","shape":[2],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8), tensor: "w")
    }

    @Test func unsupportedDType() throws {
        for dtype in ["F64", "BOOL", "I8", "F8_E4M3", "U64"] {
            try expectFailure(.unsupportedDType, header: #"{"w": {"dtype":"\#(dtype)","shape":[1],"data_offsets":[0,8]}}"#,
                              data: .init(repeating: 0, count: 8), tensor: "w")
        }
    }

    @Test func shapeThatIsNotNonNegativeIntegers() throws {
        for shape in ["[-1]", "[1.5]", "\"2\"", "[true]", "[2, null]"] {
            try expectFailure(.invalidShape, header: #"{"w": {"dtype":"F32","shape":\#(shape),"data_offsets":[0,8]}}"#,
                              data: .init(repeating: 0, count: 8), tensor: "w")
        }
    }

    @Test func shapeWhoseSizeOverflows() throws {
        try expectFailure(.shapeOverflow, header: #"{"w": {"dtype":"F32","shape":[4611686018427387904, 4],"data_offsets":[0,8]}}"#,
                          data: .init(repeating: 0, count: 8), tensor: "w")
        // Element count fits, byte count does not.
        try expectFailure(.shapeOverflow, header: #"{"w": {"dtype":"I64","shape":[2305843009213693952],"data_offsets":[0,8]}}"#,
                          data: .init(repeating: 0, count: 8), tensor: "w")
        // A zero dimension makes the rest irrelevant: this one is valid and empty.
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try writeRaw(dir.file("z.safetensors"), header: #"{"w": {"dtype":"F32","shape":[0, 9223372036854775807],"data_offsets":[0,0]}}"#)
        #expect(try SafeTensorsFile(path: dir.file("z.safetensors")).tensor("w").count == 0)
    }

    @Test func dataOffsetsThatAreNotARange() throws {
        for offsets in ["[8, 0]", "[0]", "[0, 8, 16]", "[\"0\", 8]", "[-8, 0]", "[0, 8.5]", "{}"] {
            try expectFailure(.invalidDataOffsets, header: #"{"w": {"dtype":"F32","shape":[2],"data_offsets":\#(offsets)}}"#,
                              data: .init(repeating: 0, count: 16), tensor: "w")
        }
    }

    @Test func dataOffsetsPastTheEndOfTheData() throws {
        try expectFailure(.dataOutOfBounds, header: #"{"w": {\#(Self.good)}}"#, data: .init(repeating: 0, count: 7), tensor: "w")
        try expectFailure(.dataOutOfBounds, header: #"{"w": {"dtype":"U8","shape":[0],"data_offsets":[9223372036854775807,9223372036854775807]}}"#, tensor: "w")
    }

    @Test func dataOffsetsOfTheWrongSize() throws {
        try expectFailure(.sizeMismatch, header: #"{"w": {"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                          data: .init(repeating: 0, count: 16), tensor: "w")
        try expectFailure(.sizeMismatch, header: #"{"w": {"dtype":"BF16","shape":[2],"data_offsets":[0,8]}}"#,
                          data: .init(repeating: 0, count: 8), tensor: "w")
    }

    @Test func overlappingTensors() throws {
        let header = #"{"a": {"dtype":"F32","shape":[2],"data_offsets":[0,8]}, "b": {"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        try expectFailure(.overlappingTensors, header: header, data: .init(repeating: 0, count: 12), tensor: "b")
        let same = #"{"a": {"dtype":"U8","shape":[4],"data_offsets":[0,4]}, "b": {"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#
        try expectFailure(.overlappingTensors, header: same, data: .init(repeating: 0, count: 4), tensor: "b")
    }

    @Test func metadataThatIsNotAnObjectOfStrings() throws {
        try expectFailure(.invalidMetadata, header: #"{"__metadata__": ["pt"]}"#)
        try expectFailure(.invalidMetadata, header: #"{"__metadata__": {"format": "pt", "total": 3}}"#)
    }

    @Test func lookupOfAMissingTensor() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("one.safetensors")
        try SafeTensorsWriter.write([("w", Tensor([1], shape: [1]))], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.info("v") == nil)
        #expect { try file.tensor("v") } throws: { ($0 as? SafeTensorsError)?.kind == .tensorNotFound }
    }

    @Test func validFilesWithEmptyTensorsAndNoMetadataAreAccepted() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("ok.safetensors")
        let header = #"{"b": {"dtype":"U8","shape":[2],"data_offsets":[4,6]}, "e": {"dtype":"F32","shape":[0],"data_offsets":[4,4]}, "a": {"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#
        try writeRaw(path, header: header, data: [1, 0, 0, 0, 7, 8])
        let file = try SafeTensorsFile(path: path)
        #expect(file.tensorNames == ["a", "e", "b"])
        #expect(try file.tensor("b").integers() == [7, 8])
        #expect(try file.tensor("a").integers() == [1])
        #expect(file.metadata.isEmpty)
        // No tensors at all and no data is a valid (empty) file.
        try writeRaw(dir.file("empty.safetensors"), header: "{}")
        #expect(try SafeTensorsFile(path: dir.file("empty.safetensors")).tensorNames.isEmpty)
    }

    /// As the reference loader (the safetensors crate's `validate`): the tensors' data must tile the
    /// data section, so a hole before, between or after tensors is an error.
    @Test func holesAndTrailingBytesAreRejected() throws {
        let a = #""a": {"dtype":"U8","shape":[2],"data_offsets":[0,2]}"#
        try expectFailure(.gapInData, header: #"{\#(a), "b": {"dtype":"U8","shape":[2],"data_offsets":[4,6]}}"#,
                          data: .init(repeating: 0, count: 6), tensor: "b")
        try expectFailure(.gapInData, header: #"{"b": {"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#,
                          data: .init(repeating: 0, count: 3), tensor: "b")
        // An empty tensor is at a place too: inside another's bytes it overlaps, past the end it leaves a gap.
        try expectFailure(.overlappingTensors, header: #"{\#(a), "e": {"dtype":"F32","shape":[0],"data_offsets":[1,1]}}"#,
                          data: .init(repeating: 0, count: 2), tensor: "e")
        try expectFailure(.trailingData, header: "{\(a)}", data: .init(repeating: 0, count: 3))
        try expectFailure(.trailingData, header: "{}", data: [0])
    }
}

/// Random corruption of a valid file never crashes the reader: each variant is rejected or yields
/// tensors that lie inside the file.
@Suite struct SafeTensorsFuzzTests {
    @Test func mutatedFilesAreRejectedOrSafe() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let validPath = dir.file("valid.safetensors")
        try SafeTensorsWriter.write(try SafeTensorsTests.sampleTensors(), metadata: ["format": "pt"], to: validPath)
        let valid = [UInt8](try Data(contentsOf: URL(fileURLWithPath: validPath)))
        let headerEnd = 8 + Int(valid[0]) + Int(valid[1]) << 8

        var rng = SplitMix64(seed: 0xC0_10CA7E)
        var accepted = 0, rejected = 0
        var kinds = Set<SafeTensorsError.Kind>()
        let path = dir.file("mutant.safetensors")
        for _ in 0..<3000 {
            var bytes = valid
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                mutate(&bytes, headerEnd: headerEnd, using: &rng)
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let file = try SafeTensorsFile(path: path)
                accepted += 1
                #expect(file.fileSize == bytes.count)
                for name in file.tensorNames {
                    let info = try #require(file.info(name))
                    #expect(info.byteRange.lowerBound >= file.dataStart && info.byteRange.upperBound <= file.fileSize)
                    #expect(info.byteRange.count == info.shape.reduce(1, *) * info.dtype.byteSize)
                    let t = try file.tensor(name)
                    #expect(t.byteCount == info.byteRange.count)
                    // Touch every byte of the view.
                    _ = UnsafeRawBufferPointer(start: t.rawPointer, count: t.byteCount).reduce(0) { $0 &+ Int($1) }
                }
            } catch let error as SafeTensorsError {
                rejected += 1
                kinds.insert(error.kind)
                #expect(!error.description.isEmpty && !error.description.contains("\n"))
            }
        }
        // The mutations reach both outcomes and many distinct rules.
        #expect(accepted > 0 && rejected > 0)
        #expect(kinds.count >= 8, "\(kinds)")
    }

    private func mutate(_ bytes: inout [UInt8], headerEnd: Int, using rng: inout SplitMix64) {
        guard !bytes.isEmpty else {
            bytes = [UInt8.random(in: 0...255, using: &rng)]
            return
        }
        let headerRange = 8..<max(8, min(headerEnd, bytes.count))
        switch Int.random(in: 0..<8, using: &rng) {
        case 0:  // bit flip in the header
            if !headerRange.isEmpty { bytes[Int.random(in: headerRange, using: &rng)] ^= 1 << UInt8.random(in: 0...7, using: &rng) }
        case 1:  // bit flip anywhere (data included)
            bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= 1 << UInt8.random(in: 0...7, using: &rng)
        case 2:  // truncation
            bytes.removeLast(Int.random(in: 1...bytes.count, using: &rng))
        case 3:  // new header length: nearby, or anything
            guard bytes.count >= 8 else { return }
            let old = bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            let new = Bool.random(using: &rng) ? old &+ UInt64(bitPattern: Int64.random(in: -16...16, using: &rng)) : rng.next()
            for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: new >> (8 * UInt64(i))) }
        case 4:  // inserted garbage
            let garbage = (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            bytes.insert(contentsOf: garbage, at: Int.random(in: 0...bytes.count, using: &rng))
        case 5:  // a digit of the header replaced by another (shapes and offsets change meaning)
            let digits = headerRange.filter { (0x30...0x39).contains(bytes[$0]) }
            if let i = digits.randomElement(using: &rng) { bytes[i] = UInt8.random(in: 0x30...0x39, using: &rng) }
        case 6:  // a header character replaced by a JSON-significant one
            let significant = Array("{}[],:\" 0-9eE.".utf8)
            if !headerRange.isEmpty { bytes[Int.random(in: headerRange, using: &rng)] = significant.randomElement(using: &rng)! }
        default:  // a range deleted
            let start = Int.random(in: 0..<bytes.count, using: &rng)
            bytes.removeSubrange(start..<min(bytes.count, start + Int.random(in: 1...8, using: &rng)))
        }
    }
}

import Compute
import Foundation
import Models
import Testing
import WeightSync

/// Weight-sync notices and layouts come from trainers in other processes: mutated, they are rejected
/// or decode to something whose sizes can be computed without overflow.
@Suite struct FuzzWeightSyncTests {
    static let iterations = 4000

    static func layout() throws -> WeightLayout {
        WeightLayout(table: ParameterTable(config: try ModelPreset.named("llama-tiny").config()), dtype: .bf16)
    }

    static func notices() throws -> [WeightSyncNotice] {
        let layout = try layout()
        let cpu = MemoryHandle(deviceUUID: "CPU-x", kind: .cpuSharedMemory, byteCount: layout.totalBytes, offset: 0,
                               opaque: Array(repeating: 1, count: 24), ownerPID: 1)
        let cuda = MemoryHandle(deviceUUID: "GPU-2a36941f-b41a-b60b-0006-61ebcd2ec0aa", kind: .cudaFileDescriptor, byteCount: 1 << 40,
                                offset: 4096, opaque: (0..<44).map { UInt8($0 * 5 & 255) }, ownerPID: 4321)
        return [ExportedWeights(handle: cpu, layout: layout, version: 3).notice, ExportedWeights(handle: cuda, layout: layout, version: 9).notice]
    }

    @Test func noticesWithRangesThatOverflowAreRejected() throws {
        var notice = try Self.notices()[1]
        notice.handle.offset = Int.max - 10  // offset + byteCount overflows
        #expect { try WeightSyncNotice(bytes: notice.bytes) } throws: { "\($0)".contains("invalid memory handle range") }
        notice.handle.offset = 0
        notice.handle.ownerPID = -1  // kill(-1, 0) would ask about every process
        #expect { try WeightSyncNotice(bytes: notice.bytes) } throws: { "\($0)".contains("owner pid -1") }
    }

    @Test func mutatedNoticesAreRejectedOrValid() throws {
        let seeds = try Self.notices().map(\.bytes)
        var mutator = ByteMutator(seed: 0x5EED_0A71, donors: seeds)
        var decoded = 0, rejected = 0
        for i in 0..<Self.iterations {
            do {
                let n = try WeightSyncNotice(bytes: mutator.mutated(seeds[i % seeds.count]))
                decoded += 1
                #expect(n.handle.offset >= 0 && n.handle.byteCount >= 0 && n.handle.ownerPID > 0)
                #expect(!n.handle.offset.addingReportingOverflow(n.handle.byteCount).overflow)
                #expect(try WeightSyncNotice(bytes: n.bytes) == n)
            } catch {
                rejected += 1
                #expect("\(error)".contains("weight sync notice"), "\(error)")
            }
        }
        #expect(decoded > 0 && rejected > 0, "decoded \(decoded), rejected \(rejected)")
    }

    @Test func layoutsFromTheWireAreValidated() throws {
        let good = try Self.layout()
        #expect(try JSONDecoder().decode(WeightLayout.self, from: JSONEncoder().encode(good)) == good)
        var huge = good
        huge.entries[0].shape = [Int.max / 2, 4]  // count × dtype size overflows
        var negative = good
        negative.entries[1].shape = [-4, 8]
        var outside = good
        outside.entries[2].offset = good.totalBytes
        var wrapping = good
        wrapping.entries[3].offset = Int.max - 1
        for (bad, message) in [(huge, "too large"), (negative, "negative or too large"), (outside, "lies outside"), (wrapping, "lies outside")] {
            let data = try JSONEncoder().encode(bad)
            #expect(throws: DecodingError.self, "\(message)") { try JSONDecoder().decode(WeightLayout.self, from: data) }
            #expect { try bad.validate() } throws: { "\($0)".contains(message) }
        }
    }

    @Test func mutatedExportsAreRejectedOrAddressable() throws {
        let layout = try Self.layout()
        let notice = try Self.notices()[0]
        let seed = Array(try JSONEncoder().encode(ExportedWeights(handle: notice.handle, layout: layout, version: 1)))
        var mutator = ByteMutator(seed: 0x1A70_07, donors: [seed])
        var decoded = 0
        for _ in 0..<Self.iterations {
            guard let e = try? JSONDecoder().decode(ExportedWeights.self, from: Data(mutator.mutated(seed))) else { continue }
            decoded += 1
            // Every size of what decodes is computable and inside the layout.
            for entry in e.layout.entries {
                #expect(entry.offset >= 0 && entry.offset + entry.byteCount <= e.layout.totalBytes)
            }
        }
        #expect(decoded > 0)
    }
}

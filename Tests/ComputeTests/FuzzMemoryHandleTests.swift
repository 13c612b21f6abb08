import Foundation
import Testing

@testable import Compute

/// Memory handles arrive from other processes: their ranges, sizes and pids are checked without
/// overflow, and every decoder of them rejects what it cannot represent instead of trapping.
@Suite struct FuzzMemoryHandleTests {
    static let iterations = 4000

    static func handle(kind: MemoryHandle.Kind = .cpuSharedMemory, byteCount: Int = 4096, offset: Int = 256,
                       opaque: [UInt8] = Array(repeating: 7, count: 24), pid: Int32 = 4321) -> MemoryHandle {
        MemoryHandle(deviceUUID: "GPU-0f1e2d3c", kind: kind, byteCount: byteCount, offset: offset, opaque: opaque, ownerPID: pid)
    }

    @Test func rangesNearIntMaxAreRefusedNotOverflowed() throws {
        #expect(MemoryHandle.range(offset: 0, byteCount: 10, fitsIn: 10))
        #expect(MemoryHandle.range(offset: 10, byteCount: 0, fitsIn: 10))
        #expect(!MemoryHandle.range(offset: 1, byteCount: 10, fitsIn: 10))
        // offset + byteCount overflows: must be "does not fit", not a trap or a wrap to a small number.
        #expect(!MemoryHandle.range(offset: 8, byteCount: Int.max, fitsIn: 4096))
        #expect(!MemoryHandle.range(offset: Int.max, byteCount: Int.max, fitsIn: Int.max))
        #expect(!MemoryHandle.range(offset: -1, byteCount: 1, fitsIn: 10))
        #expect(!MemoryHandle.range(offset: 0, byteCount: -1, fitsIn: 10))

        let h = Self.handle(byteCount: Int.max, offset: 8)
        #expect { try h.validate() } throws: { "\($0)".contains("invalid memory handle range") }
        #expect { try h.checkRange(within: 4096) } throws: { "\($0)".contains("exceeds the exported allocation of 4096 bytes") }
        #expect { try Self.handle(pid: 0).validate() } throws: { "\($0)".contains("owner pid 0") }
        #expect { try Self.handle(pid: -1).validate() } throws: { "\($0)".contains("owner pid -1") }

        // Slicing: the sum of the offsets overflows.
        let big = Self.handle(byteCount: 16, offset: Int.max - 8)
        #expect { try big.slice(offset: 12, byteCount: 4) } throws: { "\($0)".contains("overflows") }
        #expect { try Self.handle().slice(offset: 1, byteCount: Int.max) } throws: { "\($0)".contains("outside a handle") }
        #expect(try Self.handle().slice(offset: 96, byteCount: 4000).offset == 352)
    }

    @Test func fileDescriptorHandleSizeMustFitAnInt() throws {
        func opaque(pid: Int32, size: UInt64) -> [UInt8] {
            var out = OpaqueBytesWriter()
            out.put(size)
            return DescriptorReference(pid: pid, exchange: 1, id: 2, secret: [3, 4]).bytes + out.bytes
        }
        let good = Self.handle(kind: .cudaFileDescriptor, opaque: opaque(pid: 4321, size: 1 << 21))
        #expect(try good.fileDescriptorReference().size == 1 << 21)
        // 2⁶³ and above would trap in Int(_:); zero maps nothing; another pid is a forgery.
        for (pid, size) in [(Int32(4321), UInt64(1) << 63), (4321, .max), (4321, 0), (99, 1 << 21)] {
            let h = Self.handle(kind: .cudaFileDescriptor, opaque: opaque(pid: pid, size: size))
            #expect { try h.fileDescriptorReference() } throws: { "\($0)".contains("malformed CUDA file-descriptor handle") }
        }
        #expect { try Self.handle(kind: .cudaFileDescriptor, opaque: [1, 2, 3]).fileDescriptorReference() } throws: { _ in true }
    }

    @Test func decodingAHandleValidatesIt() throws {
        let good = try JSONEncoder().encode(Self.handle())
        #expect(try JSONDecoder().decode(MemoryHandle.self, from: good) == Self.handle())
        for bad in [Self.handle(byteCount: -1), Self.handle(offset: -5), Self.handle(byteCount: Int.max, offset: 1), Self.handle(pid: 0)] {
            let data = try JSONEncoder().encode(bad)
            #expect(throws: DecodingError.self, "\(bad)") { try JSONDecoder().decode(MemoryHandle.self, from: data) }
        }
    }

    @Test func mutatedHandlesAreRejectedOrValid() throws {
        let seeds = try [
            Self.handle(), Self.handle(kind: .cudaIPC, opaque: Array(repeating: 0xAB, count: 64)),
            Self.handle(kind: .cudaFileDescriptor, byteCount: 1 << 40, offset: 0, opaque: Array(repeating: 1, count: 44)),
        ].map { Array(try JSONEncoder().encode($0)) }
        var mutator = ByteMutator(seed: 0x4A4D_1E5, donors: seeds)
        var accepted = 0, rejected = 0
        for i in 0..<Self.iterations {
            let input = mutator.mutated(seeds[i % seeds.count])
            guard let h = try? JSONDecoder().decode(MemoryHandle.self, from: Data(input)) else {
                rejected += 1
                continue
            }
            accepted += 1
            #expect(h.offset >= 0 && h.byteCount >= 0 && h.ownerPID > 0)
            #expect(!h.offset.addingReportingOverflow(h.byteCount).overflow)
            // Whatever decodes can be checked against any allocation size without trapping.
            _ = try? h.checkRange(within: 1 << 30)
            if h.kind == .cudaFileDescriptor { _ = try? h.fileDescriptorReference() }
        }
        #expect(accepted > 0 && rejected > 0, "accepted \(accepted), rejected \(rejected)")
    }

    @Test func mutatedOpaqueBytesAreRejectedOrRead() {
        let identity = SharedMemoryIdentity(pid: 77, fd: 5, inode: 123_456, device: 42).bytes
        let reference = DescriptorReference(pid: 77, exchange: 9, id: 3, secret: [1, 2]).bytes
        var mutator = ByteMutator(seed: 0x0BA9_0E5, donors: [identity, reference])
        var read = 0
        for i in 0..<Self.iterations {
            let input = mutator.mutated(i % 2 == 0 ? identity : reference)
            if (try? SharedMemoryIdentity(bytes: input)) != nil { read += 1 }
            if (try? DescriptorReference(bytes: input)) != nil { read += 1 }
        }
        #expect(read > 0)
    }
}

import Compute
import Foundation
import Models
import Testing
import WeightSync

/// The copy plan of a weight sync (what the CUDA importer queues), executed here on host memory:
/// host addresses are addresses too, so the plan's arithmetic — blocks, pitches, merges, dtype
/// conversion — is checked against `ShardSpec.copyShard`, the reference the CPU path uses.
@Suite struct WeightSyncPlanTests {
    static func table(_ preset: String) throws -> ParameterTable {
        ParameterTable(config: try ModelPreset.named(preset).config())
    }

    /// A trainer buffer in host memory with distinct values per element.
    static func trainer(_ layout: WeightLayout) throws -> HostMemory {
        let memory = try HostMemory.allocate(byteCount: layout.totalBytes)
        for (i, e) in layout.entries.enumerated() {
            let values = (0..<e.count).map { Float(i) + Float($0 % 977) / 1024 }
            values.withUnsafeBytes { v in
                DTypeConversion.convert(from: v.baseAddress!, .f32, to: memory.baseAddress + e.offset, e.dtype, count: e.count)
            }
        }
        return memory
    }

    /// Engine shards: in one allocation laid out as `WeightLayout(shardsOf:)` lays them out, or one allocation each.
    static func engine(_ table: ParameterTable, dtype: DType, worldSize: Int, oneAllocation: Bool)
        throws -> (weights: [String: Tensor], memory: [HostMemory])
    {
        var weights: [String: Tensor] = [:]
        if oneAllocation {
            var offsets: [(String, [Int], Int)] = []
            var total = 0
            for spec in table.specs {
                let shape = spec.shard.shardShape(of: spec.shape, worldSize: worldSize)
                offsets.append((spec.name, shape, total))
                total += (shape.reduce(1, *) * dtype.byteSize + 255) / 256 * 256
            }
            let memory = try HostMemory.allocate(byteCount: total)
            for (name, shape, offset) in offsets { weights[name] = Tensor(memory: memory, byteOffset: offset, dtype: dtype, shape: shape) }
            return (weights, [memory])
        }
        for spec in table.specs {
            weights[spec.name] = try Tensor.zeros(spec.shard.shardShape(of: spec.shape, worldSize: worldSize), dtype: dtype)
        }
        return (weights, weights.values.map { $0.memory! })
    }

    static func plan(_ layout: WeightLayout, _ source: HostMemory, _ table: ParameterTable, _ weights: [String: Tensor],
                     rank: Int, worldSize: Int) -> ShardCopyPlan {
        let destinations = layout.entries.map { e -> ShardCopyPlan.Destination in
            let w = weights[e.name]!
            return .init(address: UInt64(UInt(bitPattern: w.rawPointer)), dtype: w.dtype, allocation: ObjectIdentifier(w.memory!))
        }
        return ShardCopyPlan(layout: layout, sourceBase: UInt64(UInt(bitPattern: source.baseAddress)), table: table,
                             destinations: destinations, rank: rank, worldSize: worldSize)
    }

    /// Runs the copies on the host, row by row, as the GPU's 2-D copies do.
    static func execute(_ plan: ShardCopyPlan) {
        for c in plan.copies {
            for r in 0..<c.rows {
                let s = UnsafeRawPointer(bitPattern: UInt(c.source))! + r * c.sourcePitch * c.sourceType.byteSize
                let d = UnsafeMutableRawPointer(bitPattern: UInt(c.destination))! + r * c.destinationPitch * c.destinationType.byteSize
                DTypeConversion.convert(from: s, c.sourceType, to: d, c.destinationType, count: c.columns)
            }
        }
    }

    @Test(arguments: [("opt-tiny", DType.f16, DType.f16, 1, true), ("opt-tiny", .f32, .bf16, 1, true),
                      ("opt-tiny", .f32, .f16, 2, true), ("llama-tiny", .f32, .bf16, 2, false),
                      ("qwen2-tiny", .bf16, .bf16, 2, true), ("llama-tiny", .f16, .f16, 1, false)])
    func planMovesEveryShardLikeTheReference(preset: String, trainerType: DType, engineType: DType, worldSize: Int, oneAllocation: Bool) throws {
        let table = try Self.table(preset)
        let layout = WeightLayout(table: table, dtype: trainerType)
        let source = try Self.trainer(layout)
        for rank in 0..<worldSize {
            let (weights, memory) = try Self.engine(table, dtype: engineType, worldSize: worldSize, oneAllocation: oneAllocation)
            let plan = Self.plan(layout, source, table, weights, rank: rank, worldSize: worldSize)
            Self.execute(plan)
            for e in layout.entries {
                let w = weights[e.name]!
                let expected = try Tensor.zeros(w.shape, dtype: engineType)
                table[e.name]!.shard.copyShard(from: UnsafeRawPointer(source.baseAddress + e.offset), e.dtype, shape: e.shape,
                                               to: expected.rawPointer, engineType, rank: rank, worldSize: worldSize)
                #expect(memcmp(expected.rawPointer, w.rawPointer, w.byteCount) == 0, "\(e.name) rank \(rank)")
            }
            #expect(plan.parameters == layout.entries.count)
            #expect(plan.destinationBytes == weights.values.reduce(0) { $0 + $1.byteCount })
            withExtendedLifetime(memory) {}
        }
    }

    @Test func oneAllocationLaidOutLikeTheTrainerIsOneCopyAtTensorParallelOne() throws {
        // opt-125m: every tensor is a multiple of 256 bytes in f16, so nothing pads and all of it is one run.
        let table = try Self.table("opt-125m")
        let layout = WeightLayout(table: table, dtype: .f16)
        let fakeSource = try HostMemory.allocate(byteCount: 64)
        let flat = try Self.engine(table, dtype: .f16, worldSize: 1, oneAllocation: true)
        let merged = Self.plan(layout, fakeSource, table, flat.weights, rank: 0, worldSize: 1)
        #expect(merged.copies.count == 1)
        #expect(merged.copies.first?.columns == layout.totalBytes / 2)
        let separate = try Self.engine(try Self.table("opt-tiny"), dtype: .f16, worldSize: 1, oneAllocation: false)
        let tinyLayout = WeightLayout(table: try Self.table("opt-tiny"), dtype: .f16)
        let perParameter = Self.plan(tinyLayout, fakeSource, try Self.table("opt-tiny"), separate.weights, rank: 0, worldSize: 1)
        #expect(perParameter.copies.count == tinyLayout.entries.count)
    }

    @Test func rowParallelShardsAreStridedCopies() throws {
        let table = try Self.table("opt-tiny")
        let layout = WeightLayout(table: table, dtype: .f32)
        let source = try HostMemory.allocate(byteCount: layout.totalBytes)
        let (weights, _) = try Self.engine(table, dtype: .f32, worldSize: 2, oneAllocation: false)
        let plan = Self.plan(layout, source, table, weights, rank: 1, worldSize: 2)
        let fc2 = layout["model.decoder.layers.0.fc2.weight"]!  // [64, 256], row-parallel
        let copy = try #require(plan.copies.first { $0.destination == UInt64(UInt(bitPattern: weights[fc2.name]!.rawPointer)) })
        #expect(copy.rows == 64 && copy.columns == 128 && copy.sourcePitch == 256 && copy.destinationPitch == 128)
        #expect(copy.source == UInt64(UInt(bitPattern: source.baseAddress)) + UInt64(fc2.offset + 128 * 4))
    }

    @Test func layoutFingerprintsAndNotices() throws {
        let table = try Self.table("llama-tiny")
        let a = WeightLayout(table: table, dtype: .f32), b = WeightLayout(table: table, dtype: .f32)
        #expect(a.fingerprint == b.fingerprint)
        #expect(a.fingerprint != WeightLayout(table: table, dtype: .bf16).fingerprint)
        var moved = a
        moved.entries[3].offset += 256
        #expect(moved.fingerprint != a.fingerprint)

        let handle = MemoryHandle(deviceUUID: "CPU-x", kind: .cpuSharedMemory, byteCount: a.totalBytes, offset: 0, opaque: [1], ownerPID: 1)
        let exported = ExportedWeights(handle: handle, layout: a, version: 7)
        var cache = WeightLayoutCache()
        #expect(throws: WeightSyncError.self) { try cache.resolve(exported.notice) }
        cache.remember(exported)
        var next = exported.notice
        next.version = 8
        let resolved = try cache.resolve(next)
        #expect(resolved.layout == a && resolved.version == 8 && resolved.handle == handle)
        let json = try JSONEncoder().encode(next)
        #expect(try JSONDecoder().decode(WeightSyncNotice.self, from: json) == next)

        var cuda = next
        cuda.handle = MemoryHandle(deviceUUID: "GPU-2a36941f-b41a-b60b-0006-61ebcd2ec0aa", kind: .cudaIPC, byteCount: 1 << 40,
                                   offset: 4096, opaque: (0..<64).map { UInt8($0 * 3 & 255) }, ownerPID: 4321)
        var shared = cuda
        shared.handle.kind = .cudaFileDescriptor
        shared.handle.opaque = (0..<44).map { UInt8($0 * 5 & 255) }
        for notice in [next, cuda, shared] {
            #expect(try WeightSyncNotice(bytes: notice.bytes) == notice)
            for cut in [0, 3, 4, notice.bytes.count - 1] {
                #expect(throws: WeightSyncError.self) { try WeightSyncNotice(bytes: Array(notice.bytes.prefix(cut))) }
            }
            #expect(throws: WeightSyncError.self) { try WeightSyncNotice(bytes: notice.bytes + [0]) }
        }
    }

    /// The CPU kinds through the device-independent API: a shared-memory trainer buffer and the importer
    /// `WeightImporters.make` picks for a CPU backend.
    @Test func cpuBufferAndImporterThroughTheProtocols() throws {
        let table = try Self.table("opt-tiny")
        let device = Device(kind: .cpu, ordinal: 0, uuid: "CPU-00000000-0000-0000-0000-0000000000a1", capacity: 1 << 30)
        let buffer: any ExportableWeightBuffer = try SharedWeightBuffer(layout: WeightLayout(table: table, dtype: .f32), device: device)
        for (i, (_, t)) in buffer.tensors.sorted(by: { $0.key < $1.key }).enumerated() {
            t.copy(from: Tensor((0..<t.count).map { Float(i) + Float($0) / 64 }, shape: t.shape))
        }
        buffer.version += 1
        let importer = WeightImporters.make(for: CPUBackend(device: device))
        #expect(importer.device == device)
        var weights: [String: Tensor] = [:]
        for spec in table.specs { weights[spec.name] = try Tensor.zeros(spec.shard.shardShape(of: spec.shape, worldSize: 2), dtype: .bf16) }
        let exported = try buffer.export()
        #expect(try importer.mismatches(against: exported, table: table, weights: weights, rank: 1, worldSize: 2).count > 0)
        let bytes = try importer.update(from: exported, table: table, weights: weights, rank: 1, worldSize: 2)
        #expect(bytes == weights.values.reduce(0) { $0 + $1.byteCount })
        #expect(try importer.mismatches(against: exported, table: table, weights: weights, rank: 1, worldSize: 2).isEmpty)
        #expect(importer.openMappings == 1)

        var wrongShape = weights
        wrongShape["model.decoder.layers.0.fc1.weight"] = try Tensor.zeros([256, 64], dtype: .bf16)
        #expect(throws: WeightSyncError.self) {
            _ = try importer.update(from: exported, table: table, weights: wrongShape, rank: 1, worldSize: 2)
        }
    }
}

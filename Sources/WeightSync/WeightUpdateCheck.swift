import Compute
import Models

/// The checks every weight update passes before its first byte is written, whatever the device:
/// the update names exactly the model's parameters with their full shapes and float dtypes, each lies
/// inside the exported buffer, and the engine holds the expected shard of each.
enum WeightUpdateCheck {
    static func validate(_ exported: ExportedWeights, table: ParameterTable, weights: [String: Tensor], worldSize: Int) throws {
        let layout = exported.layout
        var seen = Set<String>()
        for entry in layout.entries {
            guard let spec = table[entry.name] else {
                throw WeightSyncError("update has tensor \(entry.name), which the engine's model does not have")
            }
            guard entry.shape == spec.shape else {
                throw WeightSyncError("tensor \(entry.name) has shape \(entry.shape) in the update, the engine expects \(spec.shape)")
            }
            guard entry.dtype.isFloatingPoint else {
                throw WeightSyncError("tensor \(entry.name) has dtype \(entry.dtype); weights must be f32, bf16 or f16")
            }
            guard entry.offset >= 0, entry.byteCount <= exported.handle.byteCount,
                  entry.offset <= exported.handle.byteCount - entry.byteCount else {
                throw WeightSyncError("tensor \(entry.name) lies outside the exported buffer")
            }
            guard seen.insert(entry.name).inserted else {
                throw WeightSyncError("update has tensor \(entry.name) twice")
            }
        }
        for spec in table.specs where !seen.contains(spec.name) {
            throw WeightSyncError("update is missing tensor \(spec.name)")
        }
        for spec in table.specs {
            let expected = spec.shard.shardShape(of: spec.shape, worldSize: worldSize)
            guard let w = weights[spec.name], w.shape == expected else {
                throw WeightSyncError("engine tensor \(spec.name) is not the expected shard \(expected)")
            }
            guard w.dtype.isFloatingPoint, w.isContiguous else {
                throw WeightSyncError("engine tensor \(spec.name) must be a contiguous float tensor, not \(w)")
            }
        }
    }

    /// Checks an engine rank's exported weights before a trainer writes into them: exactly the model's
    /// parameters, each with the rank's shard shape and a float dtype, inside the exported buffer and
    /// overlapping no other. The caller has checked that the model splits `worldSize` ways.
    static func validate(destination d: WeightDestination, table: ParameterTable) throws {
        guard d.worldSize >= 1, d.rank >= 0, d.rank < d.worldSize else {
            throw WeightSyncError("destination rank \(d.rank) is outside a tensor-parallel group of \(d.worldSize)")
        }
        let handle = d.exported.handle
        var seen = Set<String>()
        var previousEnd = 0
        for entry in d.exported.layout.entries.sorted(by: { $0.offset < $1.offset }) {
            guard let spec = table[entry.name] else {
                throw WeightSyncError("engine rank \(d.rank) has tensor \(entry.name), which the trainer's model does not have")
            }
            let expected = spec.shard.shardShape(of: spec.shape, worldSize: d.worldSize)
            guard entry.shape == expected else {
                throw WeightSyncError("engine rank \(d.rank) holds \(entry.name) as \(entry.shape); its shard at TP \(d.worldSize) is \(expected)")
            }
            guard entry.dtype.isFloatingPoint else {
                throw WeightSyncError("engine tensor \(entry.name) has dtype \(entry.dtype); weights must be f32, bf16 or f16")
            }
            guard entry.offset >= previousEnd, entry.offset % entry.dtype.byteSize == 0,
                  entry.byteCount <= handle.byteCount, entry.offset <= handle.byteCount - entry.byteCount else {
                throw WeightSyncError("engine tensor \(entry.name) lies outside the exported buffer or overlaps another")
            }
            previousEnd = entry.offset + entry.byteCount
            guard seen.insert(entry.name).inserted else { throw WeightSyncError("engine rank \(d.rank) lists tensor \(entry.name) twice") }
        }
        for spec in table.specs where !seen.contains(spec.name) {
            throw WeightSyncError("engine rank \(d.rank) is missing tensor \(spec.name)")
        }
    }
}

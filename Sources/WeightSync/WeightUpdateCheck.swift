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
}

import Compute
import Models

/// The engine-rank side of weight sync, whatever the device: validate an export against this rank's
/// weights, then copy this rank's shard of every parameter out of the trainer's buffer.
///
/// Two kinds: ``WeightImporter`` (virtual CPU devices, shared memory) and ``CUDAWeightImporter``
/// (GPUs, CUDA IPC). ``WeightImporters/make(for:)`` picks the one for a backend.
public protocol WeightImporting: AnyObject {
    /// The device this rank's weights live on; only exports of this device are accepted.
    var device: Device { get }
    /// Number of trainer buffers currently mapped.
    var openMappings: Int { get }
    /// Checks `exported` against this rank's weights and the parameter table; writes nothing.
    func validate(_ exported: ExportedWeights, table: ParameterTable, weights: [String: Tensor], worldSize: Int) throws
    /// Validates everything, then copies rank `rank`'s shards into `weights`. Returns the bytes written.
    func update(from exported: ExportedWeights, table: ParameterTable, weights: [String: Tensor],
                rank: Int, worldSize: Int) throws -> Int
    /// The names of the weights that differ from their shard of the export (converted to the
    /// engine's dtype, so an f32 → bf16 sync compares equal).
    func mismatches(against exported: ExportedWeights, table: ParameterTable, weights: [String: Tensor],
                    rank: Int, worldSize: Int) throws -> [String]
    /// Closes every mapping (a trainer released or replaced its buffer).
    func closeAll()
}

public enum WeightImporters {
    /// The importer for weights on `backend`'s device: CUDA IPC for a ``CUDABackend``, shared memory
    /// otherwise.
    public static func make(for backend: any ComputeBackend) -> any WeightImporting {
        if let cuda = backend as? CUDABackend { return CUDAWeightImporter(backend: cuda) }
        return WeightImporter(device: backend.device)
    }
}

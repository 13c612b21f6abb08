import Models

extension TokenBatch {
    /// The int64 (or int32) `input_ids` [batch, tokens] of a safetensors file, as `colocate grads` and
    /// the golden files of `shared/fixtures` store them.
    public static func readInputIDs(_ path: String) throws -> TokenBatch {
        let file = try SafeTensorsFile(path: path)
        guard let info = file.info("input_ids") else { throw TrainingError("\(path) has no tensor input_ids") }
        guard info.shape.count == 2, info.dtype == .i64 || info.dtype == .i32 else {
            throw TrainingError("input_ids must be int64 [batch, tokens], got \(info.dtype) \(info.shape)")
        }
        guard info.shape[0] > 0, info.shape[1] > 1 else {
            throw TrainingError("input_ids \(info.shape) must hold at least one row of at least two tokens")
        }
        let flat = try file.tensor("input_ids").integers()
        var ids: [Int32] = []
        ids.reserveCapacity(flat.count)
        for (i, id) in flat.enumerated() {
            guard let narrow = Int32(exactly: id) else {
                throw TrainingError("input_ids row \(i / info.shape[1]), column \(i % info.shape[1]): token id \(id) is out of range")
            }
            ids.append(narrow)
        }
        return TokenBatch(ids: ids, batch: info.shape[0], sequence: info.shape[1])
    }
}

import Compute
import Foundation
import Models

/// Training rows from a `.safetensors` file: int64 (or int32) `input_ids` [N, T] and, optionally,
/// `loss_mask` [N, T] (int64, int32, uint8 or f32; non-zero trains the token).
enum SafeTensorsData {
    static func load(path: String) throws -> TrainingData {
        let name = (path as NSString).lastPathComponent
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(path: path)
        } catch {
            throw TrainingError("data file \(name) is not a valid safetensors file: \(error.message)")
        }
        guard let info = file.info("input_ids") else {
            throw TrainingError("data file \(name) has no input_ids tensor (it holds: \(file.tensorNames.joined(separator: ", ")))")
        }
        guard info.shape.count == 2 else {
            throw TrainingError("data file \(name): input_ids has shape \(info.shape); expected [rows, sequence]")
        }
        let (rows, sequence) = (info.shape[0], info.shape[1])
        guard rows > 0, sequence > 0 else { throw TrainingError("data file \(name) is empty (input_ids has shape \(info.shape))") }
        let ids = try integers(try file.tensor("input_ids"), name: name, what: "input_ids").enumerated().map { i, v -> Int32 in
            guard let id = Int32(exactly: v) else {
                throw TrainingError("data file \(name): token id \(v) at row \(i / sequence), column \(i % sequence) is outside the model's vocabulary")
            }
            return id
        }
        var mask: [Float]?
        if let maskInfo = file.info("loss_mask") {
            guard maskInfo.shape == info.shape else {
                throw TrainingError("data file \(name): loss_mask has shape \(maskInfo.shape); input_ids has \(info.shape)")
            }
            let t = try file.tensor("loss_mask")
            mask = t.dtype == .f32 ? t.floats() : try integers(t, name: name, what: "loss_mask").map { $0 != 0 ? 1 : 0 }
        }
        return TrainingData(ids: ids, lossMask: mask, rows: rows, sequence: sequence)
    }

    private static func integers(_ t: Tensor, name: String, what: String) throws -> [Int64] {
        switch t.dtype {
        case .i64: return Array(UnsafeBufferPointer(start: t.rawPointer.assumingMemoryBound(to: Int64.self), count: t.count))
        case .i32: return UnsafeBufferPointer(start: t.rawPointer.assumingMemoryBound(to: Int32.self), count: t.count).map(Int64.init)
        case .u8: return UnsafeBufferPointer(start: t.rawPointer.assumingMemoryBound(to: UInt8.self), count: t.count).map(Int64.init)
        default: throw TrainingError("data file \(name): \(what) is \(t.dtype.rawValue); expected int64")
        }
    }
}

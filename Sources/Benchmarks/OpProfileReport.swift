import Compute
import Foundation

/// Prints the GPU time per op since the last report, when the backend profiles ops
/// (`COLOCATE_PROFILE_OPS=1`): where a benchmark's device time goes.
enum OpProfileReport {
    static func print(_ backend: any ComputeBackend, label: String, top: Int = 12) throws {
        guard let cuda = backend as? CUDABackend, cuda.profilesOps else { return }
        let ops = try cuda.opProfile()
        let total = ops.reduce(0) { $0 + $1.seconds }
        Swift.print(String(format: "  op profile (%@): %.2f ms GPU in %d ops", label, total * 1e3, ops.reduce(0) { $0 + $1.count }))
        for op in ops.prefix(top) {
            Swift.print(String(format: "    %-14@ %8.2f ms %5.1f%%  %7d calls  %7.2f µs/call", op.op as NSString, op.seconds * 1e3,
                               100 * op.seconds / max(total, 1e-12), op.count, op.seconds * 1e6 / Double(max(op.count, 1))))
        }
    }
}

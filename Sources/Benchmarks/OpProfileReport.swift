import Compute
import Foundation

/// Prints the GPU time per op since the last report, when the backend profiles ops
/// (`COLOCATE_PROFILE_OPS=1`): where a benchmark's device time goes, and what each op costs the host
/// (inside the op, and the model's code before it).
enum OpProfileReport {
    static func print(_ backend: any ComputeBackend, label: String, top: Int = 12) throws {
        guard let cuda = backend as? CUDABackend, cuda.profilesOps else { return }
        let ops = try cuda.opProfile()
        let total = ops.reduce(0) { $0 + $1.seconds }
        let host = ops.reduce(0) { $0 + $1.hostInside + $1.hostBefore }
        Swift.print(String(format: "  op profile (%@): %.2f ms GPU, %.2f ms host, in %d ops", label, total * 1e3, host * 1e3,
                           ops.reduce(0) { $0 + $1.count }))
        for op in ops.prefix(top) {
            let calls = Double(max(op.count, 1))
            Swift.print(String(format: "    %-14@ %8.2f ms %5.1f%%  %7d calls  %7.2f µs/call GPU, host %6.2f inside + %6.2f before",
                               op.op as NSString, op.seconds * 1e3, 100 * op.seconds / max(total, 1e-12), op.count,
                               op.seconds * 1e6 / calls, op.hostInside * 1e6 / calls, op.hostBefore * 1e6 / calls))
        }
    }
}

import CCUDA
import Synchronization

/// NCCL, resolved from `libnccl.so.2`. The binding only; the communicator is in Collectives
/// (one process per GPU; NCCL refuses two ranks on one GPU, which is why weights never go through it).
package final class NCCL: @unchecked Sendable {
    let library: DynamicLibrary
    /// e.g. 22803 for 2.28.3.
    package let version: Int32

    package let ncclGetUniqueId: PFN_ncclGetUniqueId
    package let ncclCommInitRank: PFN_ncclCommInitRank
    package let ncclCommDestroy: PFN_ncclCommDestroy
    package let ncclAllReduce: PFN_ncclAllReduce
    let ncclGetErrorString: PFN_ncclGetErrorString
    let ncclGetLastError: PFN_ncclGetLastError?

    private init(library l: DynamicLibrary) throws(CUDAError) {
        library = l
        ncclGetUniqueId = try l.function("ncclGetUniqueId")
        ncclCommInitRank = try l.function("ncclCommInitRank")
        ncclCommDestroy = try l.function("ncclCommDestroy")
        ncclAllReduce = try l.function("ncclAllReduce")
        ncclGetErrorString = try l.function("ncclGetErrorString")
        ncclGetLastError = l.optionalFunction(["ncclGetLastError"])
        let getVersion: PFN_ncclGetVersion = try l.function("ncclGetVersion")
        var v: Int32 = 0
        _ = getVersion(&v)
        version = v
    }

    static let shared: Result<NCCL, CUDAError> = {
        let result = Result { () throws(CUDAError) -> NCCL in
            try NCCL(library: DynamicLibrary.open("NCCL", candidates: CUDALibraryPaths.nccl, override: "COLOCATE_LIBNCCL"))
        }
        if case .success(let nccl) = result { published.withLock { $0 = nccl } }
        return result
    }()

    private static let published = Mutex<NCCL?>(nil)
    static var loadedIfAny: NCCL? { published.withLock { $0 } }

    package static func load() throws(CUDAError) -> NCCL { try shared.get() }

    func errorText(_ code: Int32) -> String? {
        guard let text = ncclGetErrorString(code) else { return nil }
        var out = String(cString: text)
        if let last = ncclGetLastError?(nil).map({ String(cString: $0) }), !last.isEmpty { out += " (\(last))" }
        return out
    }
}

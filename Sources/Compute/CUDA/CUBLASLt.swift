import CCUDA
import Synchronization

/// cuBLASLt, resolved from `libcublasLt.so.13` (or `.12`). Used for every GEMM of the CUDA backend.
final class CUBLASLt: @unchecked Sendable {
    let library: DynamicLibrary
    let version: Int

    let cublasLtCreate: PFN_cublasLtCreate
    let cublasLtDestroy: PFN_cublasLtDestroy
    let cublasLtGetStatusName: PFN_cublasLtGetStatusName?
    let cublasLtGetStatusString: PFN_cublasLtGetStatusString?
    let cublasLtMatmulDescCreate: PFN_cublasLtMatmulDescCreate
    let cublasLtMatmulDescDestroy: PFN_cublasLtMatmulDescDestroy
    let cublasLtMatmulDescSetAttribute: PFN_cublasLtMatmulDescSetAttribute
    let cublasLtMatrixLayoutCreate: PFN_cublasLtMatrixLayoutCreate
    let cublasLtMatrixLayoutDestroy: PFN_cublasLtMatrixLayoutDestroy
    let cublasLtMatmulPreferenceCreate: PFN_cublasLtMatmulPreferenceCreate
    let cublasLtMatmulPreferenceDestroy: PFN_cublasLtMatmulPreferenceDestroy
    let cublasLtMatmulPreferenceSetAttribute: PFN_cublasLtMatmulPreferenceSetAttribute
    let cublasLtMatmulAlgoGetHeuristic: PFN_cublasLtMatmulAlgoGetHeuristic
    let cublasLtMatmul: PFN_cublasLtMatmul

    private init(library l: DynamicLibrary) throws(CUDAError) {
        library = l
        cublasLtCreate = try l.function("cublasLtCreate")
        cublasLtDestroy = try l.function("cublasLtDestroy")
        cublasLtGetStatusName = l.optionalFunction(["cublasLtGetStatusName"])
        cublasLtGetStatusString = l.optionalFunction(["cublasLtGetStatusString"])
        cublasLtMatmulDescCreate = try l.function("cublasLtMatmulDescCreate")
        cublasLtMatmulDescDestroy = try l.function("cublasLtMatmulDescDestroy")
        cublasLtMatmulDescSetAttribute = try l.function("cublasLtMatmulDescSetAttribute")
        cublasLtMatrixLayoutCreate = try l.function("cublasLtMatrixLayoutCreate")
        cublasLtMatrixLayoutDestroy = try l.function("cublasLtMatrixLayoutDestroy")
        cublasLtMatmulPreferenceCreate = try l.function("cublasLtMatmulPreferenceCreate")
        cublasLtMatmulPreferenceDestroy = try l.function("cublasLtMatmulPreferenceDestroy")
        cublasLtMatmulPreferenceSetAttribute = try l.function("cublasLtMatmulPreferenceSetAttribute")
        cublasLtMatmulAlgoGetHeuristic = try l.function("cublasLtMatmulAlgoGetHeuristic")
        cublasLtMatmul = try l.function("cublasLtMatmul")
        let getVersion: PFN_cublasLtGetVersion? = l.optionalFunction(["cublasLtGetVersion"])
        version = getVersion.map { Int($0()) } ?? 0
    }

    static let shared: Result<CUBLASLt, CUDAError> = {
        let result = Result { () throws(CUDAError) -> CUBLASLt in
            try CUBLASLt(library: DynamicLibrary.open("cuBLASLt", candidates: CUDALibraryPaths.cublasLt, override: "COLOCATE_LIBCUBLASLT"))
        }
        if case .success(let lt) = result { published.withLock { $0 = lt } }
        return result
    }()

    private static let published = Mutex<CUBLASLt?>(nil)
    static var loadedIfAny: CUBLASLt? { published.withLock { $0 } }

    static func load() throws(CUDAError) -> CUBLASLt { try shared.get() }

    func statusText(_ code: Int32) -> String? {
        guard let name = cublasLtGetStatusName?(code).map({ String(cString: $0) }) else { return nil }
        if let text = cublasLtGetStatusString?(code).map({ String(cString: $0) }), text != name { return "\(name): \(text)" }
        return name
    }
}

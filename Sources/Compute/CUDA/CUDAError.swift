/// An error reported by a CUDA library (driver, NVRTC, cuBLASLt, NCCL) or by loading one.
///
/// Every result code of every call goes through ``check(_:_:in:)``, the one choke point, which turns a
/// failure into this error with the library's own name and text for the code (`cuGetErrorName` /
/// `cuGetErrorString`, `nvrtcGetErrorString`, `cublasLtGetStatusString`, `ncclGetErrorString`).
/// Errors compare equal by library and code, so they can be matched like swift-system's `Errno`:
///
///     catch let error as CUDAError where error == .outOfMemory { ... }
public struct CUDAError: Error, CustomStringConvertible, Sendable, Hashable {
    /// Which library produced the code.
    public enum Library: String, Sendable, Hashable {
        /// Opening the libraries themselves (dlopen / dlsym): CUDA is not available.
        case loader
        case driver
        case nvrtc
        case cublasLt
        case nccl
    }

    public var library: Library
    /// The library's result code (`CUresult`, `nvrtcResult`, `cublasStatus_t`, `ncclResult_t`).
    public var code: Int32
    /// The call that failed, e.g. `cuMemAlloc_v2`.
    public var api: String
    /// The library's name and text for the code, e.g. `CUDA_ERROR_OUT_OF_MEMORY: out of memory`.
    public var message: String

    public init(library: Library, code: Int32, api: String = "", message: String = "") {
        self.library = library
        self.code = code
        self.api = api
        self.message = message
    }

    public var description: String {
        if library == .loader { return "CUDA is not available: \(message)" }
        let what = message.isEmpty ? "\(library.rawValue) error \(code)" : message
        return api.isEmpty ? what : "\(api) failed: \(what)"
    }

    public static func == (a: CUDAError, b: CUDAError) -> Bool { a.library == b.library && a.code == b.code }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(library)
        hasher.combine(code)
    }

    /// The choke point: returns when `code` means success, throws otherwise.
    @inlinable
    public static func check(_ code: Int32, _ api: StaticString, in library: Library = .driver) throws(CUDAError) {
        if code != 0 { throw failure(code, api, library) }
    }

    @usableFromInline
    static func failure(_ code: Int32, _ api: StaticString, _ library: Library) -> CUDAError {
        CUDAError(library: library, code: code, api: "\(api)", message: CUDAErrorText.describe(code, library))
    }

    /// "CUDA is not available: <why>".
    public static func notAvailable(_ why: String) -> CUDAError {
        CUDAError(library: .loader, code: 1, api: "", message: why)
    }

    // MARK: Common codes (CUresult values from cuda.h)

    public static let invalidValue = CUDAError(library: .driver, code: 1)
    public static let outOfMemory = CUDAError(library: .driver, code: 2)
    public static let notInitialized = CUDAError(library: .driver, code: 3)
    public static let deinitialized = CUDAError(library: .driver, code: 4)
    public static let insufficientDriver = CUDAError(library: .driver, code: 35)
    public static let noDevice = CUDAError(library: .driver, code: 100)
    public static let invalidDevice = CUDAError(library: .driver, code: 101)
    public static let invalidImage = CUDAError(library: .driver, code: 200)
    public static let invalidContext = CUDAError(library: .driver, code: 201)
    public static let alreadyMapped = CUDAError(library: .driver, code: 208)
    public static let noBinaryForGPU = CUDAError(library: .driver, code: 209)
    public static let peerAccessUnsupported = CUDAError(library: .driver, code: 217)
    public static let invalidPTX = CUDAError(library: .driver, code: 218)
    public static let unsupportedPTXVersion = CUDAError(library: .driver, code: 222)
    public static let invalidHandle = CUDAError(library: .driver, code: 400)
    public static let notFound = CUDAError(library: .driver, code: 500)
    public static let notReady = CUDAError(library: .driver, code: 600)
    public static let illegalAddress = CUDAError(library: .driver, code: 700)
    public static let launchOutOfResources = CUDAError(library: .driver, code: 701)
    public static let peerAccessAlreadyEnabled = CUDAError(library: .driver, code: 704)
    public static let contextIsDestroyed = CUDAError(library: .driver, code: 709)
    public static let launchFailed = CUDAError(library: .driver, code: 719)
    public static let notPermitted = CUDAError(library: .driver, code: 800)
    public static let notSupported = CUDAError(library: .driver, code: 801)
    public static let unknown = CUDAError(library: .driver, code: 999)
    /// NVRTC_ERROR_COMPILATION.
    public static let compilation = CUDAError(library: .nvrtc, code: 6)
    /// CUBLAS_STATUS_NOT_SUPPORTED.
    public static let cublasNotSupported = CUDAError(library: .cublasLt, code: 15)
}

/// Names and texts of result codes: asked from the loaded library when there is one, else from a
/// table of the common codes (so errors read well even when the library's own lookup is missing).
enum CUDAErrorText {
    static func describe(_ code: Int32, _ library: CUDAError.Library) -> String {
        switch library {
        case .driver:
            if let driver = CUDADriver.loadedIfAny, let text = driver.errorText(code) { return text }
        case .nvrtc:
            if let nvrtc = NVRTC.loadedIfAny, let text = nvrtc.errorText(code) { return text }
        case .cublasLt:
            if let lt = CUBLASLt.loadedIfAny, let text = lt.statusText(code) { return text }
        case .nccl:
            if let nccl = NCCL.loadedIfAny, let text = nccl.errorText(code) { return text }
        case .loader:
            return ""
        }
        return fallbackNames[library]?[code] ?? "\(library.rawValue) error \(code)"
    }

    static let fallbackNames: [CUDAError.Library: [Int32: String]] = [
        .driver: [
            1: "CUDA_ERROR_INVALID_VALUE", 2: "CUDA_ERROR_OUT_OF_MEMORY", 3: "CUDA_ERROR_NOT_INITIALIZED",
            4: "CUDA_ERROR_DEINITIALIZED", 35: "CUDA_ERROR_INSUFFICIENT_DRIVER", 100: "CUDA_ERROR_NO_DEVICE",
            101: "CUDA_ERROR_INVALID_DEVICE", 200: "CUDA_ERROR_INVALID_IMAGE", 201: "CUDA_ERROR_INVALID_CONTEXT",
            208: "CUDA_ERROR_ALREADY_MAPPED", 209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
            217: "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED", 218: "CUDA_ERROR_INVALID_PTX",
            222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", 400: "CUDA_ERROR_INVALID_HANDLE", 500: "CUDA_ERROR_NOT_FOUND",
            600: "CUDA_ERROR_NOT_READY", 700: "CUDA_ERROR_ILLEGAL_ADDRESS", 701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
            704: "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED", 709: "CUDA_ERROR_CONTEXT_IS_DESTROYED",
            719: "CUDA_ERROR_LAUNCH_FAILED", 800: "CUDA_ERROR_NOT_PERMITTED", 801: "CUDA_ERROR_NOT_SUPPORTED",
            999: "CUDA_ERROR_UNKNOWN",
        ],
        .nvrtc: [
            1: "NVRTC_ERROR_OUT_OF_MEMORY", 2: "NVRTC_ERROR_PROGRAM_CREATION_FAILURE", 3: "NVRTC_ERROR_INVALID_INPUT",
            4: "NVRTC_ERROR_INVALID_PROGRAM", 5: "NVRTC_ERROR_INVALID_OPTION", 6: "NVRTC_ERROR_COMPILATION",
            7: "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
        ],
        .cublasLt: [
            1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
            8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
            14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR",
        ],
        .nccl: [
            1: "ncclUnhandledCudaError", 2: "ncclSystemError", 3: "ncclInternalError", 4: "ncclInvalidArgument",
            5: "ncclInvalidUsage", 6: "ncclRemoteError", 7: "ncclInProgress",
        ],
    ]
}

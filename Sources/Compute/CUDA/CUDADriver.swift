import CCUDA
import Synchronization

/// The CUDA driver API, resolved from `libcuda.so.1` by versioned name (`cuMemAlloc_v2`, ...): the
/// unversioned names of those entry points are the pre-CUDA-4 ABI with 32-bit sizes.
///
/// Loaded once per process (``shared``); `cuInit(0)` has run when loading succeeds.
final class CUDADriver: @unchecked Sendable {
    let library: DynamicLibrary
    let version: Int32

    let cuInit: PFN_cuInit
    let cuDriverGetVersion: PFN_cuDriverGetVersion
    let cuGetErrorName: PFN_cuGetErrorName
    let cuGetErrorString: PFN_cuGetErrorString
    let cuDeviceGetCount: PFN_cuDeviceGetCount
    let cuDeviceGet: PFN_cuDeviceGet
    let cuDeviceGetName: PFN_cuDeviceGetName
    let cuDeviceGetUuid: PFN_cuDeviceGetUuid
    let cuDeviceTotalMem: PFN_cuDeviceTotalMem
    let cuDeviceGetAttribute: PFN_cuDeviceGetAttribute
    let cuDevicePrimaryCtxRetain: PFN_cuDevicePrimaryCtxRetain
    let cuDevicePrimaryCtxRelease: PFN_cuDevicePrimaryCtxRelease
    let cuCtxSetCurrent: PFN_cuCtxSetCurrent
    let cuCtxPushCurrent: PFN_cuCtxPushCurrent
    let cuCtxPopCurrent: PFN_cuCtxPopCurrent
    let cuCtxSynchronize: PFN_cuCtxSynchronize
    let cuMemGetInfo: PFN_cuMemGetInfo
    let cuMemAlloc: PFN_cuMemAlloc
    let cuMemFree: PFN_cuMemFree
    let cuMemAllocHost: PFN_cuMemAllocHost
    let cuMemFreeHost: PFN_cuMemFreeHost
    let cuMemGetAddressRange: PFN_cuMemGetAddressRange
    let cuMemcpyHtoD: PFN_cuMemcpyHtoD
    let cuMemcpyDtoH: PFN_cuMemcpyDtoH
    let cuMemcpyDtoD: PFN_cuMemcpyDtoD
    let cuMemcpyHtoDAsync: PFN_cuMemcpyHtoDAsync
    let cuMemcpyDtoHAsync: PFN_cuMemcpyDtoHAsync
    let cuMemcpyDtoDAsync: PFN_cuMemcpyDtoDAsync
    let cuMemsetD8Async: PFN_cuMemsetD8Async
    let cuMemcpy2DAsync: PFN_cuMemcpy2DAsync
    let cuStreamCreate: PFN_cuStreamCreate
    let cuStreamDestroy: PFN_cuStreamDestroy
    let cuStreamSynchronize: PFN_cuStreamSynchronize
    let cuStreamWaitEvent: PFN_cuStreamWaitEvent
    let cuEventCreate: PFN_cuEventCreate
    let cuEventDestroy: PFN_cuEventDestroy
    let cuEventRecord: PFN_cuEventRecord
    let cuEventSynchronize: PFN_cuEventSynchronize
    let cuEventElapsedTime: PFN_cuEventElapsedTime
    let cuModuleLoadData: PFN_cuModuleLoadData
    let cuModuleUnload: PFN_cuModuleUnload
    let cuModuleGetFunction: PFN_cuModuleGetFunction
    let cuFuncSetAttribute: PFN_cuFuncSetAttribute
    let cuLaunchKernel: PFN_cuLaunchKernel
    let cuStreamBeginCapture: PFN_cuStreamBeginCapture
    let cuStreamEndCapture: PFN_cuStreamEndCapture
    let cuGraphInstantiateWithFlags: PFN_cuGraphInstantiateWithFlags
    let cuGraphLaunch: PFN_cuGraphLaunch
    let cuGraphExecDestroy: PFN_cuGraphExecDestroy
    let cuGraphDestroy: PFN_cuGraphDestroy
    let cuIpcGetMemHandle: PFN_cuIpcGetMemHandle
    let cuIpcOpenMemHandle: PFN_cuIpcOpenMemHandle
    let cuIpcCloseMemHandle: PFN_cuIpcCloseMemHandle
    let cuMemGetAllocationGranularity: PFN_cuMemGetAllocationGranularity
    let cuMemCreate: PFN_cuMemCreate
    let cuMemRelease: PFN_cuMemRelease
    let cuMemAddressReserve: PFN_cuMemAddressReserve
    let cuMemAddressFree: PFN_cuMemAddressFree
    let cuMemMap: PFN_cuMemMap
    let cuMemUnmap: PFN_cuMemUnmap
    let cuMemSetAccess: PFN_cuMemSetAccess
    let cuMemExportToShareableHandle: PFN_cuMemExportToShareableHandle
    let cuMemImportFromShareableHandle: PFN_cuMemImportFromShareableHandle

    private init(library l: DynamicLibrary) throws(CUDAError) {
        library = l
        cuInit = try l.function("cuInit")
        cuDriverGetVersion = try l.function("cuDriverGetVersion")
        cuGetErrorName = try l.function("cuGetErrorName")
        cuGetErrorString = try l.function("cuGetErrorString")
        cuDeviceGetCount = try l.function("cuDeviceGetCount")
        cuDeviceGet = try l.function("cuDeviceGet")
        cuDeviceGetName = try l.function("cuDeviceGetName")
        cuDeviceGetUuid = try l.function("cuDeviceGetUuid_v2", "cuDeviceGetUuid")
        cuDeviceTotalMem = try l.function("cuDeviceTotalMem_v2")
        cuDeviceGetAttribute = try l.function("cuDeviceGetAttribute")
        cuDevicePrimaryCtxRetain = try l.function("cuDevicePrimaryCtxRetain")
        cuDevicePrimaryCtxRelease = try l.function("cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease")
        cuCtxSetCurrent = try l.function("cuCtxSetCurrent")
        cuCtxPushCurrent = try l.function("cuCtxPushCurrent_v2")
        cuCtxPopCurrent = try l.function("cuCtxPopCurrent_v2")
        cuCtxSynchronize = try l.function("cuCtxSynchronize")
        cuMemGetInfo = try l.function("cuMemGetInfo_v2")
        cuMemAlloc = try l.function("cuMemAlloc_v2")
        cuMemFree = try l.function("cuMemFree_v2")
        cuMemAllocHost = try l.function("cuMemAllocHost_v2")
        cuMemFreeHost = try l.function("cuMemFreeHost")
        cuMemGetAddressRange = try l.function("cuMemGetAddressRange_v2")
        cuMemcpyHtoD = try l.function("cuMemcpyHtoD_v2")
        cuMemcpyDtoH = try l.function("cuMemcpyDtoH_v2")
        cuMemcpyDtoD = try l.function("cuMemcpyDtoD_v2")
        cuMemcpyHtoDAsync = try l.function("cuMemcpyHtoDAsync_v2")
        cuMemcpyDtoHAsync = try l.function("cuMemcpyDtoHAsync_v2")
        cuMemcpyDtoDAsync = try l.function("cuMemcpyDtoDAsync_v2")
        cuMemsetD8Async = try l.function("cuMemsetD8Async")
        cuMemcpy2DAsync = try l.function("cuMemcpy2DAsync_v2")
        cuStreamCreate = try l.function("cuStreamCreate")
        cuStreamDestroy = try l.function("cuStreamDestroy_v2")
        cuStreamSynchronize = try l.function("cuStreamSynchronize")
        cuStreamWaitEvent = try l.function("cuStreamWaitEvent")
        cuEventCreate = try l.function("cuEventCreate")
        cuEventDestroy = try l.function("cuEventDestroy_v2")
        cuEventRecord = try l.function("cuEventRecord")
        cuEventSynchronize = try l.function("cuEventSynchronize")
        cuEventElapsedTime = try l.function("cuEventElapsedTime_v2", "cuEventElapsedTime")
        cuModuleLoadData = try l.function("cuModuleLoadData")
        cuModuleUnload = try l.function("cuModuleUnload")
        cuModuleGetFunction = try l.function("cuModuleGetFunction")
        cuFuncSetAttribute = try l.function("cuFuncSetAttribute")
        cuLaunchKernel = try l.function("cuLaunchKernel")
        cuStreamBeginCapture = try l.function("cuStreamBeginCapture_v2")
        cuStreamEndCapture = try l.function("cuStreamEndCapture")
        cuGraphInstantiateWithFlags = try l.function("cuGraphInstantiateWithFlags")
        cuGraphLaunch = try l.function("cuGraphLaunch")
        cuGraphExecDestroy = try l.function("cuGraphExecDestroy")
        cuGraphDestroy = try l.function("cuGraphDestroy")
        cuIpcGetMemHandle = try l.function("cuIpcGetMemHandle")
        cuIpcOpenMemHandle = try l.function("cuIpcOpenMemHandle_v2")
        cuIpcCloseMemHandle = try l.function("cuIpcCloseMemHandle")
        cuMemGetAllocationGranularity = try l.function("cuMemGetAllocationGranularity")
        cuMemCreate = try l.function("cuMemCreate")
        cuMemRelease = try l.function("cuMemRelease")
        cuMemAddressReserve = try l.function("cuMemAddressReserve")
        cuMemAddressFree = try l.function("cuMemAddressFree")
        cuMemMap = try l.function("cuMemMap")
        cuMemUnmap = try l.function("cuMemUnmap")
        cuMemSetAccess = try l.function("cuMemSetAccess")
        cuMemExportToShareableHandle = try l.function("cuMemExportToShareableHandle")
        cuMemImportFromShareableHandle = try l.function("cuMemImportFromShareableHandle")

        // Not through CUDAError.check: its message lookup reads `loadedIfAny`, not yet published.
        let initResult = cuInit(0)
        if initResult != CUDA_SUCCESS {
            throw CUDAError.notAvailable("cuInit failed: \(Self.errorText(initResult, cuGetErrorName, cuGetErrorString) ?? "error \(initResult)")")
        }
        var v: Int32 = 0
        _ = cuDriverGetVersion(&v)
        version = v
    }

    /// The driver, loaded and initialised once per process, or why it could not be.
    static let shared: Result<CUDADriver, CUDAError> = {
        let result = Result { () throws(CUDAError) -> CUDADriver in
            try CUDADriver(library: DynamicLibrary.open("the CUDA driver", candidates: CUDALibraryPaths.driver, override: "COLOCATE_LIBCUDA"))
        }
        if case .success(let driver) = result { published.withLock { $0 = driver } }
        return result
    }()

    private static let published = Mutex<CUDADriver?>(nil)
    /// The driver if it has been loaded, without loading it.
    static var loadedIfAny: CUDADriver? { published.withLock { $0 } }

    static func load() throws(CUDAError) -> CUDADriver { try shared.get() }

    func errorText(_ code: Int32) -> String? { Self.errorText(code, cuGetErrorName, cuGetErrorString) }

    private static func errorText(_ code: Int32, _ name: PFN_cuGetErrorName, _ string: PFN_cuGetErrorString) -> String? {
        var n: UnsafePointer<CChar>?
        var s: UnsafePointer<CChar>?
        guard name(code, &n) == CUDA_SUCCESS, let n else { return nil }
        let nameText = String(cString: n)
        if string(code, &s) == CUDA_SUCCESS, let s { return "\(nameText): \(String(cString: s))" }
        return nameText
    }
}

// Declarations only: the CUDA driver, NVRTC, cuBLASLt and NCCL types this project calls, as opaque
// handles, ABI-exact structs, constants and function-pointer types. Nothing here is linked; Compute/CUDA
// opens the libraries with dlopen and resolves each symbol (by its versioned name, e.g. cuMemAlloc_v2)
// into these pointer types. Values and layouts follow cuda.h, nvrtc.h, cublasLt.h and nccl.h; the
// layouts are checked with static asserts at the end of this file.
#ifndef COLOCATE_CCUDA_H
#define COLOCATE_CCUDA_H
#include <stddef.h>
#include <stdint.h>

// MARK: - CUDA driver API (cuda.h)

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUuuid_st { char bytes[16]; } CUuuid;
typedef struct CUipcMemHandle_st { char reserved[64]; } CUipcMemHandle;

static const CUresult CUDA_SUCCESS = 0;
/// cuIpcOpenMemHandle flag: map the peer's memory even from another device, enabling peer access lazily.
static const unsigned int CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS = 1;
static const unsigned int CU_STREAM_NON_BLOCKING = 1;
static const unsigned int CU_EVENT_DEFAULT = 0;
static const unsigned int CU_EVENT_DISABLE_TIMING = 2;
static const int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
static const int CU_DEVICE_ATTRIBUTE_PCI_BUS_ID = 33;
static const int CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID = 34;
static const int CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID = 50;
static const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
static const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
static const int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;

typedef CUresult (*PFN_cuInit)(unsigned int flags);
typedef CUresult (*PFN_cuDriverGetVersion)(int *version);
typedef CUresult (*PFN_cuGetErrorName)(CUresult error, const char **name);
typedef CUresult (*PFN_cuGetErrorString)(CUresult error, const char **string);
typedef CUresult (*PFN_cuDeviceGetCount)(int *count);
typedef CUresult (*PFN_cuDeviceGet)(CUdevice *device, int ordinal);
typedef CUresult (*PFN_cuDeviceGetName)(char *name, int length, CUdevice device);
typedef CUresult (*PFN_cuDeviceGetUuid)(CUuuid *uuid, CUdevice device);                  // _v2
typedef CUresult (*PFN_cuDeviceTotalMem)(size_t *bytes, CUdevice device);                // _v2
typedef CUresult (*PFN_cuDeviceGetAttribute)(int *value, int attribute, CUdevice device);
typedef CUresult (*PFN_cuDevicePrimaryCtxRetain)(CUcontext *context, CUdevice device);
typedef CUresult (*PFN_cuDevicePrimaryCtxRelease)(CUdevice device);                      // _v2
typedef CUresult (*PFN_cuCtxSetCurrent)(CUcontext context);
typedef CUresult (*PFN_cuCtxPushCurrent)(CUcontext context);                             // _v2
typedef CUresult (*PFN_cuCtxPopCurrent)(CUcontext *context);                             // _v2
typedef CUresult (*PFN_cuCtxSynchronize)(void);
typedef CUresult (*PFN_cuMemGetInfo)(size_t *free, size_t *total);                       // _v2
typedef CUresult (*PFN_cuMemAlloc)(CUdeviceptr *pointer, size_t bytes);                  // _v2
typedef CUresult (*PFN_cuMemFree)(CUdeviceptr pointer);                                  // _v2
typedef CUresult (*PFN_cuMemAllocHost)(void **pointer, size_t bytes);                    // _v2
typedef CUresult (*PFN_cuMemFreeHost)(void *pointer);
typedef CUresult (*PFN_cuMemGetAddressRange)(CUdeviceptr *base, size_t *size, CUdeviceptr pointer); // _v2
typedef CUresult (*PFN_cuMemcpyHtoD)(CUdeviceptr dst, const void *src, size_t bytes);    // _v2
typedef CUresult (*PFN_cuMemcpyDtoH)(void *dst, CUdeviceptr src, size_t bytes);          // _v2
typedef CUresult (*PFN_cuMemcpyDtoD)(CUdeviceptr dst, CUdeviceptr src, size_t bytes);    // _v2
typedef CUresult (*PFN_cuMemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t bytes, CUstream stream); // _v2
typedef CUresult (*PFN_cuMemcpyDtoHAsync)(void *dst, CUdeviceptr src, size_t bytes, CUstream stream);       // _v2
typedef CUresult (*PFN_cuMemcpyDtoDAsync)(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream); // _v2
typedef CUresult (*PFN_cuMemsetD8Async)(CUdeviceptr dst, unsigned char value, size_t count, CUstream stream);

/// CUmemorytype: where a side of a cuMemcpy2D lives.
static const int CU_MEMORYTYPE_DEVICE = 2;
/// CUDA_MEMCPY2D (the _v2 layout): a strided copy of `Height` rows of `WidthInBytes` bytes.
typedef struct CUDA_MEMCPY2D_st {
    size_t srcXInBytes;
    size_t srcY;
    int srcMemoryType;        // CUmemorytype
    const void *srcHost;
    CUdeviceptr srcDevice;
    void *srcArray;           // CUarray
    size_t srcPitch;
    size_t dstXInBytes;
    size_t dstY;
    int dstMemoryType;        // CUmemorytype
    void *dstHost;
    CUdeviceptr dstDevice;
    void *dstArray;           // CUarray
    size_t dstPitch;
    size_t WidthInBytes;
    size_t Height;
} CUDA_MEMCPY2D;
typedef CUresult (*PFN_cuMemcpy2DAsync)(const CUDA_MEMCPY2D *copy, CUstream stream);        // _v2
typedef CUresult (*PFN_cuStreamCreate)(CUstream *stream, unsigned int flags);
typedef CUresult (*PFN_cuStreamDestroy)(CUstream stream);                                // _v2
typedef CUresult (*PFN_cuStreamSynchronize)(CUstream stream);
typedef CUresult (*PFN_cuStreamWaitEvent)(CUstream stream, CUevent event, unsigned int flags);
typedef CUresult (*PFN_cuEventCreate)(CUevent *event, unsigned int flags);
typedef CUresult (*PFN_cuEventDestroy)(CUevent event);                                   // _v2
typedef CUresult (*PFN_cuEventRecord)(CUevent event, CUstream stream);
typedef CUresult (*PFN_cuEventSynchronize)(CUevent event);
typedef CUresult (*PFN_cuEventElapsedTime)(float *milliseconds, CUevent start, CUevent end);
typedef CUresult (*PFN_cuModuleLoadData)(CUmodule *module, const void *image);
typedef CUresult (*PFN_cuModuleUnload)(CUmodule module);
typedef CUresult (*PFN_cuModuleGetFunction)(CUfunction *function, CUmodule module, const char *name);
typedef CUresult (*PFN_cuFuncSetAttribute)(CUfunction function, int attribute, int value);
typedef CUresult (*PFN_cuLaunchKernel)(CUfunction function,
                                       unsigned int gridX, unsigned int gridY, unsigned int gridZ,
                                       unsigned int blockX, unsigned int blockY, unsigned int blockZ,
                                       unsigned int sharedMemoryBytes, CUstream stream,
                                       void **kernelParameters, void **extra);
// CUDA graphs: a stream's work recorded once (stream capture) and replayed with one launch.
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;
/// CUstreamCaptureMode: RELAXED lets other threads make unsafe calls (cuMemAlloc) during a capture.
static const int CU_STREAM_CAPTURE_MODE_RELAXED = 2;
typedef CUresult (*PFN_cuStreamBeginCapture)(CUstream stream, int mode);                 // _v2
typedef CUresult (*PFN_cuStreamEndCapture)(CUstream stream, CUgraph *graph);
typedef CUresult (*PFN_cuGraphInstantiateWithFlags)(CUgraphExec *exec, CUgraph graph, unsigned long long flags);
typedef CUresult (*PFN_cuGraphLaunch)(CUgraphExec exec, CUstream stream);
typedef CUresult (*PFN_cuGraphExecDestroy)(CUgraphExec exec);
typedef CUresult (*PFN_cuGraphDestroy)(CUgraph graph);
typedef CUresult (*PFN_cuIpcGetMemHandle)(CUipcMemHandle *handle, CUdeviceptr pointer);
typedef CUresult (*PFN_cuIpcOpenMemHandle)(CUdeviceptr *pointer, CUipcMemHandle handle, unsigned int flags); // _v2
typedef CUresult (*PFN_cuIpcCloseMemHandle)(CUdeviceptr pointer);

// Virtual memory management: physical allocations (cuMemCreate) mapped into reserved address ranges,
// shareable with another process as a POSIX file descriptor.
typedef unsigned long long CUmemGenericAllocationHandle;
static const int CU_MEM_ALLOCATION_TYPE_PINNED = 1;
static const int CU_MEM_LOCATION_TYPE_DEVICE = 1;
static const int CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR = 1;
static const int CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3;
static const int CU_MEM_ALLOC_GRANULARITY_RECOMMENDED = 1;
static const int CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED = 102;
static const int CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED = 103;
typedef struct CUmemLocation_st { int type; int id; } CUmemLocation;
typedef struct CUmemAllocationProp_st {
    int type;                   // CUmemAllocationType
    int requestedHandleTypes;   // CUmemAllocationHandleType
    CUmemLocation location;
    void *win32HandleMetaData;
    struct {
        unsigned char compressionType;
        unsigned char gpuDirectRDMACapable;
        unsigned short usage;
        unsigned char reserved[4];
    } allocFlags;
} CUmemAllocationProp;
typedef struct CUmemAccessDesc_st { CUmemLocation location; int flags; } CUmemAccessDesc;
typedef CUresult (*PFN_cuMemGetAllocationGranularity)(size_t *granularity, const CUmemAllocationProp *prop, int option);
typedef CUresult (*PFN_cuMemCreate)(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                                    unsigned long long flags);
typedef CUresult (*PFN_cuMemRelease)(CUmemGenericAllocationHandle handle);
typedef CUresult (*PFN_cuMemAddressReserve)(CUdeviceptr *pointer, size_t size, size_t alignment, CUdeviceptr address,
                                            unsigned long long flags);
typedef CUresult (*PFN_cuMemAddressFree)(CUdeviceptr pointer, size_t size);
typedef CUresult (*PFN_cuMemMap)(CUdeviceptr pointer, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                                 unsigned long long flags);
typedef CUresult (*PFN_cuMemUnmap)(CUdeviceptr pointer, size_t size);
typedef CUresult (*PFN_cuMemSetAccess)(CUdeviceptr pointer, size_t size, const CUmemAccessDesc *descriptors, size_t count);
typedef CUresult (*PFN_cuMemExportToShareableHandle)(void *shareable, CUmemGenericAllocationHandle handle, int type,
                                                     unsigned long long flags);
typedef CUresult (*PFN_cuMemImportFromShareableHandle)(CUmemGenericAllocationHandle *handle, void *shareable, int type);

// MARK: - NVRTC (nvrtc.h)

typedef int nvrtcResult;
typedef struct _nvrtcProgram *nvrtcProgram;

typedef nvrtcResult (*PFN_nvrtcVersion)(int *major, int *minor);
typedef const char *(*PFN_nvrtcGetErrorString)(nvrtcResult result);
typedef nvrtcResult (*PFN_nvrtcGetNumSupportedArchs)(int *count);
typedef nvrtcResult (*PFN_nvrtcGetSupportedArchs)(int *architectures);
typedef nvrtcResult (*PFN_nvrtcCreateProgram)(nvrtcProgram *program, const char *source, const char *name,
                                              int headerCount, const char *const *headers,
                                              const char *const *includeNames);
typedef nvrtcResult (*PFN_nvrtcDestroyProgram)(nvrtcProgram *program);
typedef nvrtcResult (*PFN_nvrtcCompileProgram)(nvrtcProgram program, int optionCount, const char *const *options);
typedef nvrtcResult (*PFN_nvrtcGetProgramLogSize)(nvrtcProgram program, size_t *size);
typedef nvrtcResult (*PFN_nvrtcGetProgramLog)(nvrtcProgram program, char *log);
typedef nvrtcResult (*PFN_nvrtcGetCUBINSize)(nvrtcProgram program, size_t *size);
typedef nvrtcResult (*PFN_nvrtcGetCUBIN)(nvrtcProgram program, char *cubin);
typedef nvrtcResult (*PFN_nvrtcGetPTXSize)(nvrtcProgram program, size_t *size);
typedef nvrtcResult (*PFN_nvrtcGetPTX)(nvrtcProgram program, char *ptx);

// MARK: - cuBLASLt (cublasLt.h, library_types.h)

typedef int cublasStatus_t;
typedef struct cublasLtContext *cublasLtHandle_t;
typedef struct cublasLtMatmulDescOpaque_st *cublasLtMatmulDesc_t;
typedef struct cublasLtMatrixLayoutOpaque_st *cublasLtMatrixLayout_t;
typedef struct cublasLtMatmulPreferenceOpaque_st *cublasLtMatmulPreference_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

static const int CUDA_R_32F = 0;
static const int CUDA_R_16F = 2;
static const int CUDA_R_16BF = 14;
static const int CUBLAS_COMPUTE_32F = 68;
static const int CUBLAS_OP_N = 0;
static const int CUBLAS_OP_T = 1;
static const int CUBLASLT_MATMUL_DESC_TRANSA = 3;
static const int CUBLASLT_MATMUL_DESC_TRANSB = 4;
static const int CUBLASLT_MATMUL_DESC_EPILOGUE = 7;         // cublasLtEpilogue_t (uint32_t)
static const int CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8;     // const void *
static const int CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26;  // cudaDataType (int32_t)
static const int CUBLASLT_EPILOGUE_BIAS = 4;                // D = A·B (+ beta·C) + bias, broadcast over columns
static const int CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1;   // uint64_t
static const int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5; // uint32_t, default 256
static const int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6;
static const int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7;
static const int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8;

typedef cublasStatus_t (*PFN_cublasLtCreate)(cublasLtHandle_t *handle);
typedef cublasStatus_t (*PFN_cublasLtDestroy)(cublasLtHandle_t handle);
typedef size_t (*PFN_cublasLtGetVersion)(void);
typedef const char *(*PFN_cublasLtGetStatusName)(cublasStatus_t status);
typedef const char *(*PFN_cublasLtGetStatusString)(cublasStatus_t status);
typedef cublasStatus_t (*PFN_cublasLtMatmulDescCreate)(cublasLtMatmulDesc_t *desc, int computeType, int scaleType);
typedef cublasStatus_t (*PFN_cublasLtMatmulDescDestroy)(cublasLtMatmulDesc_t desc);
typedef cublasStatus_t (*PFN_cublasLtMatmulDescSetAttribute)(cublasLtMatmulDesc_t desc, int attribute,
                                                             const void *value, size_t bytes);
typedef cublasStatus_t (*PFN_cublasLtMatrixLayoutCreate)(cublasLtMatrixLayout_t *layout, int type,
                                                         uint64_t rows, uint64_t cols, int64_t leadingDimension);
typedef cublasStatus_t (*PFN_cublasLtMatrixLayoutDestroy)(cublasLtMatrixLayout_t layout);
typedef cublasStatus_t (*PFN_cublasLtMatmulPreferenceCreate)(cublasLtMatmulPreference_t *preference);
typedef cublasStatus_t (*PFN_cublasLtMatmulPreferenceDestroy)(cublasLtMatmulPreference_t preference);
typedef cublasStatus_t (*PFN_cublasLtMatmulPreferenceSetAttribute)(cublasLtMatmulPreference_t preference, int attribute,
                                                                   const void *value, size_t bytes);
typedef cublasStatus_t (*PFN_cublasLtMatmulAlgoGetHeuristic)(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                                             cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                                             cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                                             cublasLtMatmulPreference_t preference, int requested,
                                                             cublasLtMatmulHeuristicResult_t *results, int *returned);
typedef cublasStatus_t (*PFN_cublasLtMatmul)(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                             const void *alpha, const void *a, cublasLtMatrixLayout_t aLayout,
                                             const void *b, cublasLtMatrixLayout_t bLayout,
                                             const void *beta, const void *c, cublasLtMatrixLayout_t cLayout,
                                             void *d, cublasLtMatrixLayout_t dLayout,
                                             const cublasLtMatmulAlgo_t *algo, void *workspace,
                                             size_t workspaceBytes, CUstream stream);

// MARK: - NCCL (nccl.h)

typedef int ncclResult_t;
typedef struct ncclComm *ncclComm_t;
typedef struct { char internal[128]; } ncclUniqueId;

static const int ncclFloat16 = 6;
static const int ncclFloat32 = 7;
static const int ncclBfloat16 = 9;
static const int ncclSum = 0;

typedef ncclResult_t (*PFN_ncclGetVersion)(int *version);
typedef ncclResult_t (*PFN_ncclGetUniqueId)(ncclUniqueId *id);
typedef ncclResult_t (*PFN_ncclCommInitRank)(ncclComm_t *comm, int rankCount, ncclUniqueId id, int rank);
typedef ncclResult_t (*PFN_ncclCommDestroy)(ncclComm_t comm);
typedef ncclResult_t (*PFN_ncclAllReduce)(const void *send, void *receive, size_t count, int dataType, int op,
                                          ncclComm_t comm, CUstream stream);
typedef const char *(*PFN_ncclGetErrorString)(ncclResult_t result);
typedef const char *(*PFN_ncclGetLastError)(ncclComm_t comm);

// MARK: - Layout checks

_Static_assert(sizeof(CUuuid) == 16, "CUuuid is 16 bytes");
_Static_assert(sizeof(CUipcMemHandle) == 64, "CUipcMemHandle is 64 bytes");
_Static_assert(sizeof(CUdeviceptr) == 8, "CUdeviceptr is 64-bit");
_Static_assert(sizeof(cublasLtMatmulAlgo_t) == 64, "cublasLtMatmulAlgo_t is 64 bytes");
_Static_assert(sizeof(cublasLtMatmulHeuristicResult_t) == 96, "cublasLtMatmulHeuristicResult_t is 96 bytes");
_Static_assert(offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize) == 64, "workspaceSize at 64");
_Static_assert(offsetof(cublasLtMatmulHeuristicResult_t, state) == 72, "state at 72");
_Static_assert(sizeof(ncclUniqueId) == 128, "ncclUniqueId is 128 bytes");
_Static_assert(sizeof(CUmemAllocationProp) == 32, "CUmemAllocationProp is 32 bytes");
_Static_assert(offsetof(CUmemAllocationProp, allocFlags) == 24, "allocFlags at 24");
_Static_assert(sizeof(CUmemAccessDesc) == 12, "CUmemAccessDesc is 12 bytes");
_Static_assert(sizeof(CUDA_MEMCPY2D) == 128, "CUDA_MEMCPY2D is 128 bytes");
_Static_assert(offsetof(CUDA_MEMCPY2D, dstXInBytes) == 56, "dstXInBytes at 56");
_Static_assert(offsetof(CUDA_MEMCPY2D, WidthInBytes) == 112, "WidthInBytes at 112");

#endif

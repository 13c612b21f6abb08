// Declarations only: the CUDA driver, NVRTC, cuBLASLt and NCCL types this project calls, as opaque
// handles, enums and function-pointer types. Nothing here is linked; Compute/CUDA opens the libraries
// with dlopen and resolves each symbol into these pointer types.
#ifndef COLOCATE_CCUDA_H
#define COLOCATE_CCUDA_H
#include <stddef.h>
#include <stdint.h>

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

#endif

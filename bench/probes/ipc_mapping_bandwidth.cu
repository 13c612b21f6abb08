// Probe: device-to-device copy bandwidth through a mapping of another process's memory, by how that
// memory was allocated and shared. Answers why a 10 GB sync through a CUDA IPC mapping runs at
// ~1.69 TB/s when the same copy between two allocations of one process runs at ~2.14 TB/s.
//
//   nvcc -O2 -o probe ipc_mapping_bandwidth.cu -lcuda && ./probe [GiB]
//
// The parent allocates (cudaMalloc + cudaIpcGetMemHandle, or cuMemCreate with a POSIX fd handle) and
// sends the handle over a socketpair (the fd by SCM_RIGHTS); the child maps it and times copies
// into and out of the mapping with CUDA events, against the same copies between its own allocations.
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>
#include <algorithm>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); exit(1); } } while (0)
#define CD(x) do { CUresult r = (x); if (r != CUDA_SUCCESS) { const char *s; cuGetErrorString(r, &s); fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, s); exit(1); } } while (0)

static void send_fd(int sock, int fd, const void *data, size_t n) {
    struct msghdr msg = {};
    struct iovec iov = {(void *)data, n};
    char control[CMSG_SPACE(sizeof(int))] = {};
    msg.msg_iov = &iov; msg.msg_iovlen = 1;
    if (fd >= 0) {
        msg.msg_control = control; msg.msg_controllen = sizeof(control);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    if (sendmsg(sock, &msg, 0) < 0) { perror("sendmsg"); exit(1); }
}

static int recv_fd(int sock, void *data, size_t n) {
    struct msghdr msg = {};
    struct iovec iov = {data, n};
    char control[CMSG_SPACE(sizeof(int))] = {};
    msg.msg_iov = &iov; msg.msg_iovlen = 1;
    msg.msg_control = control; msg.msg_controllen = sizeof(control);
    if (recvmsg(sock, &msg, MSG_WAITALL) < 0) { perror("recvmsg"); exit(1); }
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    int fd = -1;
    if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

// Median of 7 timed copies (after one warm-up), in GB/s.
static double bandwidth(void *dst, const void *src, size_t bytes, cudaStream_t s) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
    CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
    std::vector<float> ms;
    for (int i = 0; i < 7; i++) {
        CK(cudaEventRecord(a, s));
        CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float t; CK(cudaEventElapsedTime(&t, a, b)); ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    CK(cudaEventDestroy(a)); CK(cudaEventDestroy(b));
    return bytes / (ms[3] * 1e-3) / 1e9;
}

struct Message { int kind; size_t bytes; cudaIpcMemHandle_t ipc; };
enum { kIPC = 1, kVMM = 2, kDone = 3 };

// A VMM allocation of `bytes` (rounded up to the granularity) shareable as a POSIX fd, mapped here.
static CUdeviceptr vmm_alloc(size_t *bytes, int *fd, CUmemGenericAllocationHandle *handle) {
    CUmemAllocationProp prop = {};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    size_t gran = 0;
    CD(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
    *bytes = (*bytes + gran - 1) / gran * gran;
    CD(cuMemCreate(handle, *bytes, &prop, 0));
    CUdeviceptr p;
    CD(cuMemAddressReserve(&p, *bytes, 0, 0, 0));
    CD(cuMemMap(p, *bytes, 0, *handle, 0));
    CUmemAccessDesc access = {};
    access.location = prop.location;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    CD(cuMemSetAccess(p, *bytes, &access, 1));
    if (fd) CD(cuMemExportToShareableHandle(fd, *handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
    return p;
}

static CUdeviceptr vmm_import(int fd, size_t bytes) {
    CUmemGenericAllocationHandle h;
    CD(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
    CUdeviceptr p;
    CD(cuMemAddressReserve(&p, bytes, 0, 0, 0));
    CD(cuMemMap(p, bytes, 0, h, 0));
    CUmemAccessDesc access = {};
    access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    access.location.id = 0;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    CD(cuMemSetAccess(p, bytes, &access, 1));
    CD(cuMemRelease(h));
    return p;
}

static void child(int sock) {
    CK(cudaSetDevice(0));
    cudaStream_t s; CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    for (;;) {
        Message m;
        int fd = recv_fd(sock, &m, sizeof m);
        if (m.kind == kDone) break;
        void *mapped = nullptr;
        if (m.kind == kIPC) CK(cudaIpcOpenMemHandle(&mapped, m.ipc, cudaIpcMemLazyEnablePeerAccess));
        else mapped = (void *)vmm_import(fd, m.bytes);
        void *local; CK(cudaMalloc(&local, m.bytes));
        void *local2; CK(cudaMalloc(&local2, m.bytes));
        printf("%-4s %6.2f GiB:", m.kind == kIPC ? "ipc" : "vmm", m.bytes / double(1 << 30));
        for (size_t part : {size_t(256) << 20, size_t(1) << 30, m.bytes}) {
            if (part > m.bytes) continue;
            printf("  [%5.2f GiB] in %5.0f out %5.0f own %5.0f", part / double(1 << 30),
                   bandwidth(local, mapped, part, s), bandwidth(mapped, local, part, s), bandwidth(local2, local, part, s));
        }
        printf("\n"); fflush(stdout);
        CK(cudaFree(local)); CK(cudaFree(local2));
        if (m.kind == kIPC) CK(cudaIpcCloseMemHandle(mapped));
        else { CD(cuMemUnmap((CUdeviceptr)mapped, m.bytes)); CD(cuMemAddressFree((CUdeviceptr)mapped, m.bytes)); close(fd); }
        char ack = 1; if (write(sock, &ack, 1) != 1) exit(1);
    }
}

int main(int argc, char **argv) {
    double big = argc > 1 ? atof(argv[1]) : 9.64;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) { perror("socketpair"); return 1; }
    pid_t pid = fork();
    if (pid == 0) { close(sv[0]); child(sv[1]); return 0; }
    close(sv[1]);
    CK(cudaSetDevice(0));
    CK(cudaFree(0));
    std::vector<size_t> sizes = {size_t(1) << 30, size_t(4) << 30, size_t(big * (1 << 30))};
    for (int kind : {kIPC, kVMM}) {
        for (size_t bytes : sizes) {
            Message m = {}; m.kind = kind; m.bytes = bytes;
            void *p = nullptr; int fd = -1;
            CUmemGenericAllocationHandle h = 0;
            if (kind == kIPC) { CK(cudaMalloc(&p, bytes)); CK(cudaIpcGetMemHandle(&m.ipc, p)); }
            else { p = (void *)vmm_alloc(&m.bytes, &fd, &h); }
            CK(cudaMemset(p, 1, m.bytes));
            CK(cudaDeviceSynchronize());
            send_fd(sv[0], fd, &m, sizeof m);
            char ack; if (read(sv[0], &ack, 1) != 1) return 1;
            if (kind == kIPC) CK(cudaFree(p));
            else { CD(cuMemUnmap((CUdeviceptr)p, m.bytes)); CD(cuMemAddressFree((CUdeviceptr)p, m.bytes)); CD(cuMemRelease(h)); close(fd); }
        }
    }
    Message done = {}; done.kind = kDone;
    send_fd(sv[0], -1, &done, sizeof done);
    waitpid(pid, nullptr, 0);
    return 0;
}

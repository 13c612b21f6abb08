@testable import Compute
import Testing

@Suite("CUDA errors")
struct CUDAErrorTests {
    @Test("Success passes the choke point; a failure throws with the call and the code's name")
    func check() throws {
        try CUDAError.check(0, "cuInit")
        let error = #expect(throws: CUDAError.self) { try CUDAError.check(2, "cuMemAlloc_v2") }
        #expect(error == .outOfMemory)
        #expect(error?.api == "cuMemAlloc_v2")
        #expect(error?.description.hasPrefix("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY") == true)
    }

    @Test("Errors compare by library and code, as swift-system's Errno")
    func equality() {
        let a = CUDAError(library: .driver, code: 700, api: "cuStreamSynchronize", message: "x")
        #expect(a == .illegalAddress)
        #expect(a != .launchFailed)
        #expect(CUDAError(library: .nvrtc, code: 6) == .compilation)
        #expect(CUDAError(library: .nvrtc, code: 2) != CUDAError(library: .driver, code: 2))
        #expect(Set([a, .illegalAddress]).count == 1)
    }

    @Test("Each library's codes are named", arguments: [
        (CUDAError.Library.nvrtc, Int32(6), "NVRTC_ERROR_COMPILATION"),
        (.cublasLt, 15, "CUBLAS_STATUS_NOT_SUPPORTED"),
        (.nccl, 5, "ncclInvalidUsage"),
        (.driver, 400, "CUDA_ERROR_INVALID_HANDLE"),
    ])
    func names(library: CUDAError.Library, code: Int32, name: String) {
        let error = CUDAError.failure(code, "call", library)
        #expect(error.description.contains(name), "\(error)")
        #expect(error.description.hasPrefix("call failed: "))
    }

    @Test("An unknown code still reads as a one-line message")
    func unknownCode() {
        let error = CUDAError.failure(12345, "cuSomething", .driver)
        #expect(!error.description.contains("\n"))
        #expect(error.description.contains("12345") || error.description.contains("CUDA_ERROR"))
    }

    @Test("Unavailable CUDA says so, with the reason")
    func notAvailable() {
        let error = CUDAError.notAvailable("cannot load the CUDA driver (tried libcuda.so.1): not found")
        #expect(error.description == "CUDA is not available: cannot load the CUDA driver (tried libcuda.so.1): not found")
        #expect(error.library == .loader)
    }
}

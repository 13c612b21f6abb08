@testable import Compute
import Foundation
import Testing

@Suite("CUDA loading")
struct CUDALoadingTests {
    @Test("Opening a library tries each candidate and reports the first loader error")
    func candidates() {
        let error = #expect(throws: CUDAError.self) {
            _ = try DynamicLibrary.open("the test library", candidates: ["/nonexistent/libone.so", "libcolocate-none.so.9"],
                                        override: "COLOCATE_TEST_UNSET_\(UInt32.random(in: 0...UInt32.max))")
        }
        let text = error?.description ?? ""
        #expect(text.hasPrefix("CUDA is not available: cannot load the test library"))
        #expect(text.contains("/nonexistent/libone.so"))
        #expect(text.contains("libcolocate-none.so.9"))
    }

    @Test("The environment override is the only path tried")
    func override() {
        let variable = "COLOCATE_TEST_OVERRIDE_\(UInt32.random(in: 0...UInt32.max))"
        setenv(variable, "/nonexistent/libforced.so.1", 1)
        defer { unsetenv(variable) }
        let error = #expect(throws: CUDAError.self) {
            _ = try DynamicLibrary.open("NVRTC", candidates: ["libc.so.6"], override: variable)
        }
        let text = error?.description ?? ""
        #expect(text.contains("\(variable)=/nonexistent/libforced.so.1"))
        #expect(!text.contains("libc.so.6"))
    }

    @Test("A library that opens resolves present symbols and names missing ones")
    func symbols() throws {
        let libc = try DynamicLibrary.open("libc", candidates: ["libc.so.6"], override: "COLOCATE_TEST_UNSET_LIBC")
        typealias GetPID = @convention(c) () -> Int32
        let getpidFunction: GetPID = try libc.function("no_such_symbol_v2", "getpid")
        #expect(getpidFunction() == getpid())
        let error = #expect(throws: CUDAError.self) { let _: GetPID = try libc.function("cuNoSuchEntry_v2") }
        #expect(error?.description.contains("does not export cuNoSuchEntry_v2") == true)
    }

    @Test("Without a driver, CUDA.load() throws 'CUDA is not available' and nothing else breaks",
          .enabled(if: !CUDA.isAvailable, "this machine has a CUDA device"))
    func unavailable() throws {
        let error = #expect(throws: CUDAError.self) { _ = try CUDA.load() }
        #expect(error?.description.hasPrefix("CUDA is not available: ") == true)
        #expect(CUDA.unavailableReason?.hasPrefix("CUDA is not available: ") == true)
        // The rest of Compute works as ever.
        let t = try Tensor.zeros([2, 3])
        #expect(t.floats() == [0, 0, 0, 0, 0, 0])
    }

    @Test("Kernel cache keys are stable and differ with any input")
    func cacheKeys() {
        let key = KernelCache.hash("13.0|cubin|90|norm.cu|source")
        #expect(key.count == 32)
        #expect(key == KernelCache.hash("13.0|cubin|90|norm.cu|source"))
        #expect(key != KernelCache.hash("13.0|cubin|80|norm.cu|source"))
        #expect(key != KernelCache.hash("13.0|cubin|90|norm.cu|sourcf"))
    }

    @Test("Byte counts read as people write them")
    func bytes() {
        #expect(formatBytes(512) == "512 B")
        #expect(formatBytes(3 << 29) == "1.5 GiB")
        #expect(formatBytes(12 << 20) == "12.0 MiB")
    }
}

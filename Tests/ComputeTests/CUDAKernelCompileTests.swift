import Compute
import Testing

/// Every CUDA kernel compiles with NVRTC for Ampere (sm_80) and Hopper (sm_90), and every entry point
/// the backend looks up is in the image. NVRTC needs no GPU; CI installs it with .ci/install-nvrtc.sh.
@Suite("CUDA kernel compilation")
struct CUDAKernelCompileTests {
    @Test("NVRTC compiles each kernel family to a CUBIN holding its entry points",
          .enabled(if: CUDATestSupport.hasNVRTC, "NVRTC not found: run .ci/install-nvrtc.sh or set COLOCATE_LIBNVRTC"),
          arguments: CUDAKernelLibrarySources.all.map(\.family), [80, 90])
    func compiles(family: String, architecture: Int) throws {
        let nvrtc = try #require(CUDATestSupport.nvrtc)
        let kernels = try #require(CUDAKernelLibrarySources.all.first { $0.family == family })
        let image = try nvrtc.compile(source: kernels.program, name: "\(family).cu", architecture: architecture,
                                      kind: .cubin, includeDirectories: CUDATestSupport.includeDirectories)
        #expect(image.kind == .cubin)
        #expect(image.bytes.starts(with: [0x7F, 0x45, 0x4C, 0x46]), "a CUBIN is an ELF file")
        for function in kernels.functions {
            #expect(image.bytes.containsSubsequence(Array(function.utf8) + [0]), "\(function) missing from the \(family) CUBIN")
        }
        #expect(!image.log.contains("warning"), "NVRTC warned: \(image.log)")
    }

    @Test("NVRTC produces PTX for the driver to compile when no CUBIN can be made",
          .enabled(if: CUDATestSupport.hasNVRTC, "NVRTC not found: run .ci/install-nvrtc.sh or set COLOCATE_LIBNVRTC"))
    func ptx() throws {
        let nvrtc = try #require(CUDATestSupport.nvrtc)
        let image = try nvrtc.compile(source: SamplingKernelsProbe.source, name: "probe.cu", architecture: 90, kind: .ptx,
                                      includeDirectories: CUDATestSupport.includeDirectories)
        let text = String(decoding: image.bytes, as: UTF8.self)
        #expect(text.contains(".target sm_90"))
        #expect(text.contains(".entry probe"))
    }

    @Test("A kernel that does not compile throws NVRTC_ERROR_COMPILATION with the compiler's log",
          .enabled(if: CUDATestSupport.hasNVRTC, "NVRTC not found: run .ci/install-nvrtc.sh or set COLOCATE_LIBNVRTC"))
    func compileError() throws {
        let nvrtc = try #require(CUDATestSupport.nvrtc)
        let error = #expect(throws: CUDAError.self) {
            _ = try nvrtc.compile(source: "extern \"C\" __global__ void broken() { undeclared = 1; }", name: "broken.cu",
                                  architecture: 90, includeDirectories: CUDATestSupport.includeDirectories)
        }
        #expect(error == .compilation)
        #expect(error?.description.contains("undeclared") == true)
        #expect(error?.description.contains("broken.cu") == true)
    }

    @Test("NVRTC lists sm_80 and sm_90 among its architectures",
          .enabled(if: CUDATestSupport.hasNVRTC, "NVRTC not found: run .ci/install-nvrtc.sh or set COLOCATE_LIBNVRTC"))
    func architectures() throws {
        let nvrtc = try #require(CUDATestSupport.nvrtc)
        #expect(nvrtc.version.major >= 12)
        #expect(nvrtc.supportedArchitectures.contains(80))
        #expect(nvrtc.supportedArchitectures.contains(90))
    }
}

private enum SamplingKernelsProbe {
    static let source = "extern \"C\" __global__ void probe(float* x) { x[threadIdx.x] *= 2.0f; }"
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        let first = needle[0]
        var i = 0
        while i <= count - needle.count {
            if self[i] == first && self[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}

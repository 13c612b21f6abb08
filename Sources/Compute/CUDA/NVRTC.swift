import CCUDA
import Synchronization

/// NVRTC, the CUDA C++ run-time compiler. It needs no GPU and no driver: CI compiles every kernel with it.
public final class NVRTC: @unchecked Sendable {
    let library: DynamicLibrary
    /// NVRTC's version, e.g. (13, 0).
    public let version: (major: Int, minor: Int)
    /// The `sm_XX` architectures this NVRTC can produce a CUBIN for, as XX (75, 80, 86, 89, 90, ...).
    public let supportedArchitectures: [Int]
    /// Where the library was opened from.
    public var path: String { library.path }

    let nvrtcVersion: PFN_nvrtcVersion
    let nvrtcGetErrorString: PFN_nvrtcGetErrorString
    let nvrtcCreateProgram: PFN_nvrtcCreateProgram
    let nvrtcDestroyProgram: PFN_nvrtcDestroyProgram
    let nvrtcCompileProgram: PFN_nvrtcCompileProgram
    let nvrtcGetProgramLogSize: PFN_nvrtcGetProgramLogSize
    let nvrtcGetProgramLog: PFN_nvrtcGetProgramLog
    let nvrtcGetCUBINSize: PFN_nvrtcGetCUBINSize
    let nvrtcGetCUBIN: PFN_nvrtcGetCUBIN
    let nvrtcGetPTXSize: PFN_nvrtcGetPTXSize
    let nvrtcGetPTX: PFN_nvrtcGetPTX

    init(library l: DynamicLibrary) throws(CUDAError) {
        library = l
        nvrtcVersion = try l.function("nvrtcVersion")
        nvrtcGetErrorString = try l.function("nvrtcGetErrorString")
        nvrtcCreateProgram = try l.function("nvrtcCreateProgram")
        nvrtcDestroyProgram = try l.function("nvrtcDestroyProgram")
        nvrtcCompileProgram = try l.function("nvrtcCompileProgram")
        nvrtcGetProgramLogSize = try l.function("nvrtcGetProgramLogSize")
        nvrtcGetProgramLog = try l.function("nvrtcGetProgramLog")
        nvrtcGetCUBINSize = try l.function("nvrtcGetCUBINSize")
        nvrtcGetCUBIN = try l.function("nvrtcGetCUBIN")
        nvrtcGetPTXSize = try l.function("nvrtcGetPTXSize")
        nvrtcGetPTX = try l.function("nvrtcGetPTX")
        var major: Int32 = 0, minor: Int32 = 0
        _ = nvrtcVersion(&major, &minor)
        version = (Int(major), Int(minor))
        var archs: [Int] = []
        if let count: PFN_nvrtcGetNumSupportedArchs = l.optionalFunction(["nvrtcGetNumSupportedArchs"]),
           let get: PFN_nvrtcGetSupportedArchs = l.optionalFunction(["nvrtcGetSupportedArchs"]) {
            var n: Int32 = 0
            if count(&n) == 0, n > 0 {
                var list = [Int32](repeating: 0, count: Int(n))
                if get(&list) == 0 { archs = list.map(Int.init) }
            }
        }
        supportedArchitectures = archs
    }

    /// The NVRTC found by the default search (`COLOCATE_LIBNVRTC`, then `libnvrtc.so.13`, `.12`, ...).
    static let shared: Result<NVRTC, CUDAError> = {
        let result = Result { () throws(CUDAError) -> NVRTC in
            try NVRTC(library: DynamicLibrary.open("NVRTC", candidates: CUDALibraryPaths.nvrtc, override: "COLOCATE_LIBNVRTC"))
        }
        if case .success(let nvrtc) = result { published.withLock { $0 = nvrtc } }
        return result
    }()

    private static let published = Mutex<NVRTC?>(nil)
    static var loadedIfAny: NVRTC? { published.withLock { $0 } }

    /// Loads NVRTC from the default search list (once per process).
    public static func load() throws(CUDAError) -> NVRTC { try shared.get() }

    /// Loads the NVRTC at `path` (not shared).
    public static func open(path: String) throws(CUDAError) -> NVRTC {
        let nvrtc = try NVRTC(library: DynamicLibrary.open("NVRTC", candidates: [path], override: "COLOCATE_LIBNVRTC_UNUSED"))
        published.withLock { if $0 == nil { $0 = nvrtc } }
        return nvrtc
    }

    /// Directories of CUDA headers passed as `-I` (those that exist): `COLOCATE_CUDA_INCLUDE`, then the
    /// toolkit's. The backend's kernels include no header; kernels of users may.
    public static var defaultIncludeDirectories: [String] { CUDALibraryPaths.includeDirectories }

    func errorText(_ code: Int32) -> String? {
        guard let text = nvrtcGetErrorString(code) else { return nil }
        return String(cString: text)
    }

    /// What a compilation produced: a CUBIN (machine code for one `sm_XX`) or PTX (for the driver to JIT).
    public enum ImageKind: String, Sendable { case cubin, ptx }

    /// Compiled code and the compiler's log (warnings).
    public struct Image: Sendable {
        public var kind: ImageKind
        public var bytes: [UInt8]
        public var log: String
    }

    /// Compiles CUDA C++ `source` for `sm_<architecture>` into a CUBIN, or into PTX for
    /// `compute_<architecture>` when `kind` is `.ptx`. Compilation errors throw with the log in the message.
    public func compile(source: String, name: String, architecture: Int, kind: ImageKind = .cubin,
                        includeDirectories: [String] = NVRTC.defaultIncludeDirectories,
                        extraOptions: [String] = []) throws(CUDAError) -> Image {
        var program: nvrtcProgram?
        try CUDAError.check(nvrtcCreateProgram(&program, source, name, 0, nil, nil), "nvrtcCreateProgram", in: .nvrtc)
        defer { _ = nvrtcDestroyProgram(&program) }
        let arch = kind == .cubin ? "sm_\(architecture)" : "compute_\(architecture)"
        let options = ["--gpu-architecture=\(arch)", "--std=c++17"] + includeDirectories.map { "-I\($0)" } + extraOptions
        let status = withCStrings(options) { nvrtcCompileProgram(program, Int32(options.count), $0) }
        let log = programLog(program)
        if status != 0 {
            var error = CUDAError.failure(status, "nvrtcCompileProgram", .nvrtc)
            error.message += " (\(name) for \(arch)):\n\(log)"
            throw error
        }
        var size = 0
        var bytes: [UInt8]
        switch kind {
        case .cubin:
            try CUDAError.check(nvrtcGetCUBINSize(program, &size), "nvrtcGetCUBINSize", in: .nvrtc)
            bytes = [UInt8](repeating: 0, count: size)
            let got = bytes.withUnsafeMutableBytes { nvrtcGetCUBIN(program, $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            try CUDAError.check(got, "nvrtcGetCUBIN", in: .nvrtc)
        case .ptx:
            try CUDAError.check(nvrtcGetPTXSize(program, &size), "nvrtcGetPTXSize", in: .nvrtc)
            bytes = [UInt8](repeating: 0, count: size)
            let got = bytes.withUnsafeMutableBytes { nvrtcGetPTX(program, $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            try CUDAError.check(got, "nvrtcGetPTX", in: .nvrtc)
        }
        return Image(kind: kind, bytes: bytes, log: log)
    }

    private func programLog(_ program: nvrtcProgram?) -> String {
        var size = 0
        guard nvrtcGetProgramLogSize(program, &size) == 0, size > 1 else { return "" }
        var buffer = [CChar](repeating: 0, count: size)
        guard nvrtcGetProgramLog(program, &buffer) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Calls `body` with a C array of C strings that lives for the call.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let duplicated: [UnsafeMutablePointer<CChar>] = strings.map { s in
        let count = s.utf8.count + 1
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: count)
        s.withCString { p.update(from: $0, count: count) }
        return p
    }
    defer { duplicated.forEach { $0.deallocate() } }
    var pointers: [UnsafePointer<CChar>?] = duplicated.map { UnsafePointer($0) }
    pointers.append(nil)
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

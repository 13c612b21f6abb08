#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A shared library opened at run time with `dlopen`, never closed: the function tables resolved from it
/// live as long as the process. Building needs no CUDA; a machine without it fails here, with the reason.
struct DynamicLibrary: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    /// The name or path that opened it.
    let path: String

    /// Opens the first of `candidates` that loads. When the environment variable `override` is set
    /// (a full path), only that path is tried.
    static func open(_ what: String, candidates: [String], override: String) throws(CUDAError) -> DynamicLibrary {
        let list: [String]
        if let forced = getenv(override).map({ String(cString: $0) }), !forced.isEmpty {
            list = [forced]
        } else {
            list = candidates
        }
        var firstError: String?
        for candidate in list {
            if let handle = dlopen(candidate, RTLD_NOW | RTLD_LOCAL) {
                return DynamicLibrary(handle: handle, path: candidate)
            }
            if firstError == nil, let message = dlerror() { firstError = String(cString: message) }
        }
        let how = list.count == 1 && list != candidates ? " (\(override)=\(list[0]))" : " (tried \(list.joined(separator: ", ")))"
        throw CUDAError.notAvailable("cannot load \(what)\(how): \(firstError ?? "not found")")
    }

    /// The first of `names` the library exports, as the C function-pointer type `T`.
    func function<T>(_ names: String..., as type: T.Type = T.self) throws(CUDAError) -> T {
        if let symbol = optionalFunction(names, as: type) { return symbol }
        throw CUDAError.notAvailable("\(path) does not export \(names.joined(separator: " or "))")
    }

    func optionalFunction<T>(_ names: [String], as type: T.Type = T.self) -> T? {
        precondition(MemoryLayout<T>.size == MemoryLayout<UnsafeMutableRawPointer>.size, "\(T.self) is not a C function pointer")
        for name in names {
            if let symbol = dlsym(handle, name) { return unsafeBitCast(symbol, to: T.self) }
        }
        return nil
    }
}

/// Where the CUDA libraries are looked for, after the loader's own search (`ld.so.cache`,
/// `LD_LIBRARY_PATH`). Each list can be overridden by a full path in its environment variable.
enum CUDALibraryPaths {
    static let toolkitDirectories = [
        "/usr/local/cuda-13.0/targets/x86_64-linux/lib",
        "/usr/local/cuda/targets/x86_64-linux/lib",
        "/usr/local/cuda/lib64",
        "/usr/local/cuda-12/lib64",
    ]

    static let driver = [
        "libcuda.so.1",
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        "/usr/local/nvidia/lib64/libcuda.so.1",
        "/usr/lib64/libcuda.so.1",
        "/usr/lib/libcuda.so.1",
        "/usr/lib/wsl/lib/libcuda.so.1",
    ]

    static let nvrtc = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
        + toolkitDirectories.flatMap { ["\($0)/libnvrtc.so.13", "\($0)/libnvrtc.so.12"] }

    static let cublasLt = ["libcublasLt.so.13", "libcublasLt.so.12"]
        + toolkitDirectories.flatMap { ["\($0)/libcublasLt.so.13", "\($0)/libcublasLt.so.12"] }

    static let nccl = ["libnccl.so.2", "/usr/lib/x86_64-linux-gnu/libnccl.so.2", "/usr/local/nccl/lib/libnccl.so.2", "libnccl.so"]

    /// Directories holding the CUDA headers (cuda_fp16.h, ...), passed to NVRTC as `-I` when present.
    /// The kernels need none, but user kernels may. `COLOCATE_CUDA_INCLUDE` comes first.
    static var includeDirectories: [String] {
        var out: [String] = []
        if let forced = getenv("COLOCATE_CUDA_INCLUDE").map({ String(cString: $0) }), !forced.isEmpty { out.append(forced) }
        out += ["/usr/local/cuda-13.0/targets/x86_64-linux/include", "/usr/local/cuda/include"]
        return out.filter { access($0, F_OK) == 0 }
    }
}

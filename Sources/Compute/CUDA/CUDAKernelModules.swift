import CCUDA

/// The backend's kernels loaded on one device: every family compiled by NVRTC for the device's
/// architecture (a CUBIN for `sm_XX`; PTX for the newest architecture NVRTC knows when it does not know
/// the device's, or when the driver rejects the CUBIN), loaded as modules, functions looked up by name.
final class CUDAKernelModules: @unchecked Sendable {
    let device: CUDADevice
    private var modules: [CUmodule] = []
    private var functions: [String: CUfunction] = [:]
    /// How each family was loaded, e.g. "cubin sm_90".
    private(set) var loadedAs: [String: String] = [:]

    init(device: CUDADevice) throws {
        self.device = device
        let nvrtc = try NVRTC.load()
        let architecture = device.properties.architecture
        let known = nvrtc.supportedArchitectures
        try device.withContext { () throws in
            for family in CUDAKernelLibrarySources.all {
                let module = try load(family, nvrtc: nvrtc, architecture: architecture, known: known)
                modules.append(module)
                for name in family.functions {
                    var function: CUfunction?
                    try CUDAError.check(device.driver.cuModuleGetFunction(&function, module, name), "cuModuleGetFunction")
                    functions[name] = function
                }
            }
        }
    }

    deinit {
        let (driver, modules) = (device.driver, modules)
        device.withContext { for module in modules { _ = driver.cuModuleUnload(module) } }
    }

    private func load(_ family: CUDAKernelSource, nvrtc: NVRTC, architecture: Int, known: [Int]) throws -> CUmodule {
        let name = "\(family.family).cu"
        if known.isEmpty || known.contains(architecture) {
            let image = try KernelCache.image(nvrtc: nvrtc, source: family.program, name: name, architecture: architecture, kind: .cubin)
            if let module = try? loadModule(image) {
                loadedAs[family.family] = "cubin sm_\(architecture)"
                return module
            }
        }
        let ptxArchitecture = known.filter { $0 <= architecture }.max() ?? architecture
        let image = try KernelCache.image(nvrtc: nvrtc, source: family.program, name: name, architecture: ptxArchitecture, kind: .ptx)
        loadedAs[family.family] = "ptx compute_\(ptxArchitecture)"
        return try loadModule(image)
    }

    private func loadModule(_ image: NVRTC.Image) throws(CUDAError) -> CUmodule {
        var bytes = image.bytes
        if image.kind == .ptx && bytes.last != 0 { bytes.append(0) }
        var module: CUmodule?
        let result = bytes.withUnsafeBytes { device.driver.cuModuleLoadData(&module, $0.baseAddress) }
        try CUDAError.check(result, "cuModuleLoadData")
        return module!
    }

    func function(_ name: String) -> CUfunction {
        guard let function = functions[name] else { preconditionFailure("no CUDA kernel named \(name)") }
        return function
    }
}

extension CUDADevice {
    /// The backend's kernels on this device, compiled and loaded on first use.
    func kernels() throws -> CUDAKernelModules {
        if let loaded = kernelModules.withLock({ $0 }) { return loaded }
        let loaded = try CUDAKernelModules(device: self)
        return kernelModules.withLock { current in
            if let current { return current }
            current = loaded
            return loaded
        }
    }

    /// How each kernel family was loaded on this device ("cubin sm_90", or PTX when the CUBIN could not be).
    public func kernelImageKinds() throws -> [String: String] { try kernels().loadedAs }
}

/// A kernel parameter as `cuLaunchKernel` reads it: each in its own 8-byte slot.
enum KernelArgument {
    case address(UInt64)
    case int64(Int64)
    case int32(Int32)
    case float(Float)

    var bits: UInt64 {
        switch self {
        case .address(let v): v
        case .int64(let v): UInt64(bitPattern: v)
        case .int32(let v): UInt64(UInt32(bitPattern: v))
        case .float(let v): UInt64(v.bitPattern)
        }
    }
}

extension CUDADriver {
    /// Launches `function` on `stream` (the caller has the context current).
    func launch(_ function: CUfunction, grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int = 0,
                stream: CUstream?, _ arguments: [KernelArgument]) throws(CUDAError) {
        var slots = arguments.map(\.bits)
        let result = slots.withUnsafeMutableBufferPointer { slotBuffer -> CUresult in
            var pointers: [UnsafeMutableRawPointer?] = (0..<slotBuffer.count).map { UnsafeMutableRawPointer(slotBuffer.baseAddress! + $0) }
            return pointers.withUnsafeMutableBufferPointer { p in
                cuLaunchKernel(function, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2),
                               UInt32(block.0), UInt32(block.1), UInt32(block.2), UInt32(sharedBytes), stream, p.baseAddress, nil)
            }
        }
        try CUDAError.check(result, "cuLaunchKernel")
    }
}

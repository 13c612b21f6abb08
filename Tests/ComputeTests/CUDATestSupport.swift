import Compute
import Foundation

/// Where the CUDA tests find NVRTC and the CUDA headers: `COLOCATE_LIBNVRTC` / `COLOCATE_CUDA_INCLUDE`,
/// else the private venv `.ci/install-nvrtc.sh` makes at the repository root, else the system's.
enum CUDATestSupport {
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `site-packages/nvidia/cu13` of the venv, if installed.
    static var venvCUDA: URL? {
        let lib = repositoryRoot.appendingPathComponent(".venv-nvrtc/lib")
        guard let pythons = try? FileManager.default.contentsOfDirectory(atPath: lib.path) else { return nil }
        for python in pythons.sorted() where python.hasPrefix("python") {
            let cu13 = lib.appendingPathComponent("\(python)/site-packages/nvidia/cu13")
            if FileManager.default.fileExists(atPath: cu13.appendingPathComponent("lib/libnvrtc.so.13").path) { return cu13 }
        }
        return nil
    }

    static let environment = ProcessInfo.processInfo.environment

    /// NVRTC, or nil (with `nvrtcProblem` saying why) when none can be loaded.
    static let nvrtcResult: Result<NVRTC, CUDAError> = {
        if let path = environment["COLOCATE_LIBNVRTC"], !path.isEmpty {
            return Result { () throws(CUDAError) in try NVRTC.open(path: path) }
        }
        if let venv = venvCUDA {
            return Result { () throws(CUDAError) in try NVRTC.open(path: venv.appendingPathComponent("lib/libnvrtc.so.13").path) }
        }
        return Result { () throws(CUDAError) in try NVRTC.load() }
    }()

    static var nvrtc: NVRTC? { try? nvrtcResult.get() }
    static var hasNVRTC: Bool { nvrtc != nil }

    static var includeDirectories: [String] {
        if let dir = environment["COLOCATE_CUDA_INCLUDE"], !dir.isEmpty { return [dir] }
        if let venv = venvCUDA { return [venv.appendingPathComponent("include").path] }
        return NVRTC.defaultIncludeDirectories
    }
}

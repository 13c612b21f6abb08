import Collectives
import Compute
import Foundation

/// `colocate cuda-check`: checks the CUDA layer on this machine's GPUs. Every op against a naive CPU
/// reference (random data, several shapes; max abs errors), GEMM throughput, device copy bandwidth, a
/// CUDA IPC round trip with a child process, NCCL all-reduce across the GPUs, and the error paths
/// (budget, handle of another GPU, handle of a dead process). With `models`, instead: the model
/// runtime on the GPU against the Hugging Face fixtures (`CUDAModelCheck`).
public struct CUDACheck: Sendable {
    /// Ordinal of the device to check.
    public var device = 0
    /// Bytes moved by the copy-bandwidth and IPC checks.
    public var bytes = 1 << 30
    /// Only the parity checks: no throughput, bandwidth, IPC or NCCL.
    public var parityOnly = false
    /// Fixtures directory (opt-tiny, llama-tiny, qwen2-tiny with golden.safetensors): check only the
    /// models on the GPU against transformers and the CPU.
    public var models: String?

    public init() {}

    /// The child process of the IPC check (`cuda-check --ipc-child`): reads its request on stdin.
    public static func runIPCChild() throws {
        try CUDAIPCCheckChild.run()
    }

    /// Runs the checks, printing as it goes; the exit status: 0 when every check passed, 1 when one
    /// failed, 2 when CUDA cannot be loaded.
    public func run() async throws -> Int32 {
        let cuda: CUDA
        do {
            cuda = try CUDA.load()
        } catch {
            print(error)
            return 2
        }
        var report = CUDACheckReport()
        try describe(cuda)
        let gpu = try cuda.device(device)
        let clock = ContinuousClock()
        let start = clock.now
        let backend = try CUDABackend(device: gpu, memoryUtilization: 0.5)
        print("backend ready (kernels compiled or read from the cache, cuBLASLt) in \(microseconds(clock.now - start)) µs")
        print("kernels: \(try gpu.kernelImageKinds().values.sorted().reduce(into: [String: Int]()) { $0[$1, default: 0] += 1 })")

        if let models {
            var check = CUDAModelCheck(backend: backend, directory: models)
            report = try check.run()
            var training = CUDATrainingModelCheck(backend: backend, directory: models)
            report.merge(try training.run())
            print("\n\(report.summary)")
            return report.failures > 0 ? 1 : 0
        }

        var parity = CUDAParityCheck(backend: backend, report: report)
        try parity.runAll()
        report = parity.report
        report.merge(try CUDATrainingParityCheck.run(backend: backend))
        report.merge(try CUDACopyBatchCheck(backend: backend).run())
        if !parityOnly {
            try CUDAThroughputCheck(backend: backend).run(bytes: bytes)
            report.merge(try CUDAIPCCheck(backend: backend, bytes: bytes).run())
            report.merge(try await CUDANCCLCheck(cuda: cuda).run())
            budgetCheck(gpu, report: &report)
        }
        print("\n\(report.summary)")
        return report.failures > 0 ? 1 : 0
    }

    private func describe(_ cuda: CUDA) throws {
        print("CUDA driver \(cuda.driverVersion / 1000).\(cuda.driverVersion % 1000 / 10)")
        let visible = ProcessInfo.processInfo.environment["CUDA_VISIBLE_DEVICES"]
        let devices = try cuda.devices()
        for d in devices {
            let p = try cuda.properties(d.ordinal)
            print("  cuda:\(d.ordinal) \(p.name) \(d.uuid) \(d.capacity >> 20) MiB sm_\(p.architecture) \(p.multiprocessorCount) SMs pci \(p.pciAddress)")
        }
        // The driver has applied the variable already: the list above is what it names.
        print("CUDA_VISIBLE_DEVICES=\(visible ?? "(unset)")")
        let nvrtc = try NVRTC.load()
        print("NVRTC \(nvrtc.version.major).\(nvrtc.version.minor) from \(nvrtc.path); archs \(nvrtc.supportedArchitectures.map(String.init).joined(separator: ","))")
        if let version = try? NCCLCommunicator.version() { print("NCCL \(version)") }
        let info = try cuda.device(device).memoryInfo()
        print("cuda:\(device) memory: \(info.free >> 20) MiB free of \(info.total >> 20) MiB")
    }

    private func budgetCheck(_ gpu: CUDADevice, report: inout CUDACheckReport) {
        print("\n== budget")
        // Only the budget's own refusal passes: any other error (a failed first allocation, a driver
        // error) is a failure of the check, not the refusal it looks for.
        let small: CUDAAllocator
        let kept: CUDABuffer
        do {
            small = try CUDAAllocator(device: gpu, memoryUtilization: 0.001)
            kept = try small.allocate(byteCount: small.budget / 2)
        } catch {
            print("  could not set up the check: \(error)")
            report.fail("budget")
            return
        }
        do {
            _ = try small.allocate(byteCount: small.budget)
            print("  allocation beyond the budget succeeded (kept \(kept.byteCount) bytes)")
            report.fail("budget")
        } catch where error.code == .overBudget {
            print("  refused as expected: \(error)")
            report.pass("budget")
        } catch {
            print("  failed, but not with the budget's refusal: \(error)")
            report.fail("budget")
        }
    }
}

/// Pass/fail tally of `cuda-check`.
struct CUDACheckReport {
    var passed: [String] = []
    var failed: [String] = []
    var failures: Int { failed.count }
    mutating func pass(_ name: String) { passed.append(name) }
    mutating func fail(_ name: String) { failed.append(name) }
    mutating func merge(_ other: CUDACheckReport) {
        passed += other.passed
        failed += other.failed
    }
    var summary: String {
        "cuda-check: \(passed.count) passed, \(failed.count) failed" + (failed.isEmpty ? "" : " (\(failed.joined(separator: ", ")))")
    }
}

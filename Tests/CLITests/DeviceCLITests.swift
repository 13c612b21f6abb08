import Foundation
import Testing

/// `--device cuda` where the CUDA driver cannot load (forced with `COLOCATE_LIBCUDA`, so the test means
/// the same on every machine): one clear line and exit status 1, for each command taking a device.
@Suite struct DeviceCLITests {
    static func withoutCUDA() -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["COLOCATE_LIBCUDA"] = "/nonexistent/libcuda.so.1"
        return env
    }

    @Test func generateAndLogitsOnCUDAWithoutCUDAAreAClearError() throws {
        let model = try colocateFixtures() + "/llama-tiny"
        for args in [["generate", "--device", "cuda", "--model", model, "--prompt-ids", "1,2,3"],
                     ["logits", "--device", "cuda", "--model", model, "--input", model + "/golden.safetensors",
                      "--output", "/nonexistent/out.safetensors"]] {
            let r = try runColocate(args, env: Self.withoutCUDA())
            #expect(r.status == 1, "\(args[0]): status \(r.status)")
            #expect(r.stderr.contains("CUDA is not available: cannot load the CUDA driver"), "\(args[0]): \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(args[0]): one line, got \(r.stderr)")
        }
    }

    @Test func unknownDeviceIsAClearError() throws {
        let model = try colocateFixtures() + "/llama-tiny"
        for device in ["tpu", "cuda:x", "cuda:-1"] {
            let r = try runColocate(["generate", "--device", device, "--model", model, "--prompt-ids", "1"])
            #expect(r.status == 1)
            #expect(r.stderr.contains("unknown device '\(device)'"), "\(r.stderr)")
        }
    }

    @Test func generateOnCPUStillWorks() throws {
        let model = try colocateFixtures() + "/llama-tiny"
        let r = try runColocate(["generate", "--device", "cpu", "--model", model, "--prompt-ids", "1,2,3",
                                 "--temperature", "0", "--max-tokens", "4", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("\"ids\":["), "\(r.stdout)")
    }
}

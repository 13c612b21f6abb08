import Foundation
import Models
import Testing

/// `colocate grads` as a user runs it: the built binary on a fixture, its output against the golden.
@Suite struct GradsCLITests {
    @Test(arguments: ["opt-tiny", "qwen2-tiny"])
    func gradsMatchGolden(model: String) throws {
        let dir = NSTemporaryDirectory() + "colocate-grads-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixture = try colocateFixtures() + "/" + model
        let r = try runColocate(["grads", "--model", fixture, "--input", fixture + "/golden.safetensors",
                                 "--output", dir + "/grads.safetensors", "--logit-chunk-rows", "10"])
        #expect(r.status == 0, "\(r.stderr)")
        let out = try SafeTensorsFile(path: dir + "/grads.safetensors")
        let golden = try SafeTensorsFile(path: fixture + "/golden.safetensors")
        let loss = try out.tensor("loss")
        #expect(loss.shape == [1] && loss.dtype == .f32)
        let goldenLoss = try golden.tensor("loss").floats()[0]
        #expect(abs(loss.floats()[0] - goldenLoss) <= 1e-5)
        let expectedNames = Set(golden.tensorNames.filter { $0.hasPrefix("grad.") })
        #expect(Set(out.tensorNames.filter { $0.hasPrefix("grad.") }) == expectedNames)
        for name in expectedNames {
            let expected = try golden.tensor(name).floats(), got = try out.tensor(name)
            #expect(got.dtype == .f32 && got.shape == golden.info(name)!.shape)
            let scale = expected.map(abs).max() ?? 0
            let worst = zip(got.floats(), expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= 1e-4 * scale + 1e-7, "\(name): max |Δ| \(worst)")
        }
    }

    @Test func badInputsAreOneLineErrors() throws {
        let fixture = try colocateFixtures() + "/opt-tiny"
        let missing = try runColocate(["grads", "--model", fixture, "--input", fixture + "/model.safetensors", "--output", "/tmp/unused.safetensors"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("has no tensor input_ids"), "\(missing.stderr)")
        let device = try runColocate(["grads", "--model", fixture, "--input", fixture + "/golden.safetensors", "--output", "/tmp/unused.safetensors",
                                      "--device", "tpu"])
        #expect(device.status != 0)
        #expect(device.stderr.contains("unknown device"), "\(device.stderr)")
    }
}

import Compute
import Foundation
import Models

/// `cuda-check --models DIR`: the model runtime on the GPU against Hugging Face transformers' golden
/// data (`shared/fixtures`: opt-tiny, llama-tiny, qwen2-tiny), and against the CPU backend.
///
/// Checks per model, each printed as a PASS/FAIL line:
/// - f32 weights: max |Δ| of the logits of `input_ids` vs `golden.safetensors` ≤ 1e-3 (the CPU gets
///   ~3e-7; the GPU's f32 GEMMs use no TF32, so it should too);
/// - the same logits GPU vs CPU backend ≤ 1e-3;
/// - greedy generation of `generate_greedy.count` tokens from `generate_prompt` equals `generate_greedy`;
/// - bf16 and f16 weights: max |Δ| vs golden ≤ 0.05 · max(1, max |golden logit|) — the bound of
///   `ModelParityTests.bf16WeightsStayClose`. bf16 keeps 8 significant bits (relative step 2⁻⁸), and
///   on the GPU the activations entering each GEMM are rounded to the weights' dtype too (as a bf16
///   model in PyTorch does), so the GPU may sit a few times further from f32 than the CPU, which keeps
///   activations in f32; 5% of the logit range is well above that and well below a wrong model
///   (random logits differ by ~100% of the range). The CPU's Δ for the same dtype is printed beside.
struct CUDAModelCheck {
    let backend: CUDABackend
    let directory: String
    var report = CUDACheckReport()

    static let models = ["opt-tiny", "llama-tiny", "qwen2-tiny"]
    static let f32Tolerance: Float = 1e-3
    static let lowPrecisionRelativeTolerance: Float = 0.05

    mutating func run() throws -> CUDACheckReport {
        print("\n== models (GPU vs Hugging Face golden logits and generations, and vs CPU)")
        for name in Self.models {
            let path = directory + "/" + name
            guard FileManager.default.fileExists(atPath: path + "/golden.safetensors") else {
                print("  FAIL \(name): no \(path)/golden.safetensors")
                report.fail("\(name) fixtures")
                continue
            }
            do {
                try check(name, path)
            } catch {
                print("  FAIL \(name): \(error)")
                report.fail("\(name) (error)")
            }
        }
        return report
    }

    private mutating func check(_ name: String, _ path: String) throws {
        let golden = try SafeTensorsFile(path: path + "/golden.safetensors")
        let ids = rows(try golden.tensor("input_ids"))
        let expected = try golden.tensor("logits").floats()
        let scale = max(1, expected.map { abs($0) }.max() ?? 0)

        let gpu = try LocalModel(directory: path, dtype: .f32, backend: backend)
        let cpu = try LocalModel(directory: path, dtype: .f32, backend: CPUBackend())
        let gpuLogits = try gpu.logits(inputIds: ids).floats()
        let cpuLogits = try cpu.logits(inputIds: ids).floats()
        expect("\(name) f32 logits vs transformers", maxDifference(gpuLogits, expected), Self.f32Tolerance,
               note: "CPU \(format(maxDifference(cpuLogits, expected)))")
        expect("\(name) f32 logits GPU vs CPU", maxDifference(gpuLogits, cpuLogits), Self.f32Tolerance)

        let prompt = rows(try golden.tensor("generate_prompt"))[0]
        let greedy = rows(try golden.tensor("generate_greedy"))[0]
        let generated = try gpu.generate(prompts: [prompt], params: SamplingParams(maxTokens: greedy.count, temperature: 0))[0][0].tokenIds
        let same = generated == greedy
        print("  \(same ? "PASS" : "FAIL") \(pad("\(name) greedy generation (\(greedy.count) tokens)")) "
            + (same ? "equal to generate_greedy" : "got \(generated), expected \(greedy)"))
        if same { report.pass("\(name) greedy") } else { report.fail("\(name) greedy") }

        try recordedDecode(name, gpu: gpu, prompt: prompt)

        for dtype in [DType.bf16, .f16] {
            let low = try LocalModel(directory: path, dtype: dtype, backend: backend).logits(inputIds: ids).floats()
            let lowCPU = try LocalModel(directory: path, dtype: dtype, backend: CPUBackend()).logits(inputIds: ids).floats()
            expect("\(name) \(dtype) logits vs transformers", maxDifference(low, expected),
                   Self.lowPrecisionRelativeTolerance * scale,
                   note: "CPU \(dtype) \(format(maxDifference(lowCPU, expected))), logit scale \(format(scale))")
        }
    }

    /// Decode steps replayed as CUDA graphs give the tokens and log-probabilities of eager steps: 8
    /// prompts of different lengths (one bucket, so the GEMMs have the same rows either way), greedy and
    /// sampled with a seed, f32 and bf16 weights.
    private mutating func recordedDecode(_ name: String, gpu: LocalModel, prompt: [Int32]) throws {
        let prompts = (0..<8).map { i in Array((prompt + prompt + prompt).prefix(3 + 2 * i)) }
        for dtype in [DType.f32, .bf16] {
            let model = dtype == .f32 ? gpu.model : try LocalModel(directory: directory + "/" + name, dtype: dtype, backend: backend).model
            for params in [SamplingParams(maxTokens: 20, temperature: 0, ignoreEOS: true),
                           SamplingParams(maxTokens: 20, temperature: 0.8, topP: 0.9, topK: 20, seed: 7, ignoreEOS: true)] {
                func run(recorded: Bool) throws -> ([[Int32]], [[Float]], Int) {
                    try backend.perform {
                        let generator = Generator(model: model, cache: try model.makeCache(blockSize: 4, numBlocks: 8 * 12 + 1))
                        generator.recordsDecodeSteps = recorded
                        let out = try generator.generate(prompts: prompts, params: params).map { $0[0] }
                        return (out.map(\.tokenIds), out.map(\.logprobs), generator.recordedStepShapes)
                    }
                }
                let eager = try run(recorded: false), graphs = try run(recorded: true)
                let what = "\(name) \(dtype) \(params.temperature == 0 ? "greedy" : "sampled") decode as CUDA graphs"
                let same = eager.0 == graphs.0 && eager.1 == graphs.1 && graphs.2 > 0
                print("  \(same ? "PASS" : "FAIL") \(pad(what)) " + (same ? "tokens and log-probs equal to eager (\(graphs.2) shapes recorded)"
                    : "recorded \(graphs.2) shapes; tokens equal: \(eager.0 == graphs.0), log-probs equal: \(eager.1 == graphs.1)"))
                if same { report.pass(what) } else { report.fail(what) }
            }
        }
    }

    private mutating func expect(_ what: String, _ difference: Float, _ tolerance: Float, note: String = "") {
        let ok = difference <= tolerance
        print("  \(ok ? "PASS" : "FAIL") \(pad(what)) max|Δ| \(format(difference))  tol \(format(tolerance))\(note.isEmpty ? "" : "  (\(note))")")
        if ok { report.pass(what) } else { report.fail(what) }
    }

    private func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return .infinity }
        var worst: Float = 0
        for (x, y) in zip(a, b) {
            let d = abs(x - y)
            worst = d.isNaN ? .infinity : max(worst, d)
        }
        return worst
    }

    private func rows(_ t: Tensor) -> [[Int32]] {
        let flat = t.integers().map { Int32(clamping: $0) }
        let width = t.shape.count == 2 ? t.shape[1] : flat.count
        return stride(from: 0, to: flat.count, by: max(width, 1)).map { Array(flat[$0..<min($0 + width, flat.count)]) }
    }

    private func pad(_ s: String) -> String { s.padding(toLength: 44, withPad: " ", startingAt: 0) }
    private func format(_ x: Float) -> String { String(format: "%.2e", Double(x)) }
}

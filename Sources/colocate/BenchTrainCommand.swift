import Benchmarks
import ArgumentParser
import Compute
import Foundation
import Models
import Training
import WeightSync

/// `colocate bench train`: tokens/s and MFU of full training steps (forward, backward, global-norm
/// clipping, AdamW over the flat buffers) of a preset's shapes with random weights and tokens.
///
/// MFU = 6 · parameters · tokens/s / peak (the usual estimate: it counts the matmuls of every
/// parameter, forward and backward, not attention's score products). Peaks: the H200's dense bf16
/// tensor-core peak (989 TFLOP/s) in bf16-mixed, its f32 CUDA-core peak (67 TFLOP/s) in f32 (no TF32);
/// on the CPU the f32 FMA peak of `bench matmul` (threads × measured GHz × 2 FMA × 8 lanes × 2).
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Tokens/s and MFU of full training steps (forward, backward, AdamW) for a preset.")

    @Option(help: "cpu or cuda.")
    var device: String = "cpu"
    @Option(help: "Model preset (random weights with its shapes).")
    var preset: String = "opt-125m"
    @Option(help: "Sequences per step.")
    var batchSize: Int = 16
    @Option(help: "Tokens per sequence.")
    var seq: Int = 512
    @Option(help: "f32, or bf16-mixed (GPU only: f32 master weights, bf16 GEMM operands). Default: bf16-mixed on cuda, f32 on cpu.")
    var dtype: String?
    @Option(help: "Timed steps (after --warmup untimed ones).")
    var steps: Int = 10
    @Option(help: "Untimed steps first (plans, kernels, the memory pool).")
    var warmup: Int = 2
    @Option(help: "GPU ordinal.")
    var ordinal: Int = 0
    @Option(help: "Peak TFLOP/s for the MFU, instead of the default for the device and dtype.")
    var peakTflops: Double?
    @Option(help: "Rows of logits computed at a time by the lm_head.")
    var logitChunkRows: Int = 1024
    @Flag(help: "Recompute each layer's activations in the backward.")
    var recompute = false

    func validate() throws {
        guard ["cpu", "cuda"].contains(device) else { throw ValidationError("--device must be cpu or cuda, not '\(device)'") }
        guard batchSize > 0, seq > 1 else { throw ValidationError("--batch-size must be positive and --seq at least 2") }
        guard steps > 0, warmup >= 0 else { throw ValidationError("--steps must be positive and --warmup not negative") }
        if let dtype, CUDATrainingPrecision(rawValue: dtype) == nil {
            throw ValidationError("--dtype must be f32 or bf16-mixed, not '\(dtype)'")
        }
        if device == "cpu" && dtype == "bf16-mixed" { throw ValidationError("--dtype bf16-mixed is a GPU mode (the CPU trains in f32)") }
    }

    func run() throws {
        let config = try ModelPreset.named(preset).config()
        guard seq <= config.maxPositions else {
            throw ValidationError("--seq \(seq) exceeds the \(config.maxPositions) positions of \(preset)")
        }
        let precision = CUDATrainingPrecision(rawValue: dtype ?? (device == "cuda" ? "bf16-mixed" : "f32"))!
        let table = ParameterTable(config: config)
        let layout = WeightLayout(table: table, dtype: .f32)
        let count = layout.totalBytes / 4

        let backend: any TrainingOps
        let peak: Double
        let peakDescription: String
        var cuda: CUDABackend?
        if device == "cuda" {
            let gpu = try CUDA.load().device(ordinal)
            let b = try CUDABackend(device: gpu, memoryUtilization: 0.9)
            b.trainingPrecision = precision
            b.cachesAllocations = true
            backend = b
            cuda = b
            peak = (peakTflops ?? (precision == .bf16Mixed ? 989 : 67)) * 1e12
            peakDescription = peakTflops != nil ? "\(peak / 1e12) TFLOP/s (given)"
                : precision == .bf16Mixed ? "989 TFLOP/s (H200 dense bf16)" : "67 TFLOP/s (H200 f32, no TF32)"
        } else {
            try CPUFeatures.check()
            backend = CPUBackend()
            let ghz = MatmulBenchmark.measureGHz()
            peak = peakTflops.map { $0 * 1e12 } ?? Double(Parallel.width) * ghz * 1e9 * 2 * 8 * 2
            peakDescription = peakTflops != nil ? "\(peak / 1e12) TFLOP/s (given)"
                : String(format: "%.0f GFLOP/s (f32 FMA peak: %d threads × %.2f GHz × 32, as bench matmul)", peak / 1e9, Parallel.width, ghz)
        }

        // Flat buffers of the trainer's layout: f32 master weights, gradients, AdamW's m and v, and the
        // bf16 copy the mixed-precision GEMMs read (element i of each is element i of the master).
        // Matrices: ±0.02 uniform (a tile of 64 Ki random values repeated: fast even in a debug build);
        // norm weights 1, biases 0.
        var random = SplitMix64(seed: 0xBE7C)
        let tile = (0..<(1 << 16)).map { _ in 0.02 * (Float(random.next() >> 40) / Float(1 << 24) * 2 - 1) }
        let host = try Tensor.zeros([count])
        let values = host.pointer(Float.self)
        for entry in layout.entries {
            let start = values + entry.offset / 4
            if entry.shape.count == 1 {
                start.update(repeating: entry.name.hasSuffix("weight") ? 1 : 0, count: entry.count)
                continue
            }
            var done = 0
            while done < entry.count {
                let n = min(tile.count, entry.count - done)
                tile.withUnsafeBufferPointer { (start + done).update(from: $0.baseAddress!, count: n) }
                done += n
            }
        }
        let params = cuda == nil ? host : try cuda!.upload(host)
        let grads = try backend.zeros([count], dtype: .f32)
        let m = try backend.zeros([count], dtype: .f32), v = try backend.zeros([count], dtype: .f32)
        let lowPrecision = precision == .bf16Mixed ? try cuda!.upload(host, as: .bf16) : nil
        func view(_ flat: Tensor, _ entry: WeightLayout.Entry, _ dtype: DType) -> Tensor {
            let byteOffset = flat.byteOffset + entry.offset / 4 * dtype.byteSize
            if let memory = flat.memory { return Tensor(memory: memory, byteOffset: byteOffset, dtype: dtype, shape: entry.shape) }
            return Tensor(deviceStorage: flat.deviceStorage!, byteOffset: byteOffset, dtype: dtype, shape: entry.shape)
        }
        var weights: [String: Tensor] = [:], gradients: [String: Tensor] = [:]
        for entry in layout.entries {
            weights[entry.name] = lowPrecision.map { view($0, entry, .bf16) } ?? view(params, entry, .f32)
            gradients[entry.name] = view(grads, entry, .f32)
        }
        let decayRanges = layout.entries.filter { $0.shape.count >= 2 }.map { $0.offset / 4..<$0.offset / 4 + $0.count }
        let model = try TrainingModel(config: config, weights: weights, gradients: gradients, backend: backend,
                                      recomputeActivations: recompute, logitChunkRows: logitChunkRows)

        let tokens = batchSize * seq
        let batch = TokenBatch(ids: (0..<tokens).map { _ in Int32(random.next() % UInt64(config.vocabSize)) }, batch: batchSize, sequence: seq)
        var lossWeights = [Float](repeating: 1 / Float(batchSize * (seq - 1)), count: tokens)
        for b in 0..<batchSize { lossWeights[b * seq] = 0 }
        let hyper = AdamWHyperparameters(learningRate: 1e-4, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)

        var lastLoss = 0.0
        let clock = ContinuousClock()
        var modelTime = Duration.zero
        func step(_ n: Int) throws {
            let begin = clock.now
            backend.scale(grads, by: 0, into: grads)
            lastLoss = try model.forwardBackward(batch, objective: CrossEntropyObjective(weights: lossWeights))
            let norm = try backend.sumOfSquares(grads).squareRoot()  // waits for the step's queue
            modelTime += clock.now - begin  // zeroing, forward, backward (and Σ g²): the rest is clipping and AdamW
            if norm > 1 { backend.scale(grads, by: Float(1 / (norm + 1e-6)), into: grads) }
            backend.adamW(params: params, grads: grads, m: m, v: v, step: n, hyper: hyper, decayRanges: decayRanges,
                          lowPrecisionCopy: lowPrecision)
            try cuda?.synchronize()  // so that the next step's time is its own (the split printed below)
        }
        let parameters = table.totalCount
        print("bench train: \(preset) (\(parameters) parameters) on \(device == "cuda" ? "cuda:\(ordinal)" : "cpu (\(Parallel.width) threads)"), "
              + "\(batchSize) × \(seq) tokens, \(precision.rawValue)\(recompute ? ", recomputed activations" : "")")
        for n in 0..<warmup { try step(n + 1) }
        try cuda?.synchronize()
        modelTime = .zero
        let start = clock.now
        for n in 0..<steps { try step(warmup + n + 1) }
        _ = try backend.sumOfSquares(m)  // waits for the last AdamW
        let seconds = (clock.now - start).inSeconds
        let tokensPerSecond = Double(tokens * steps) / seconds
        let mfu = 6 * Double(parameters) * tokensPerSecond / peak
        print(String(format: "  %.1f ms/step, %.0f tokens/s, MFU %.2f%% of %@ (6·params·tokens/s), last loss %.4f",
                     1000 * seconds / Double(steps), tokensPerSecond, 100 * mfu, peakDescription, lastLoss))
        let modelMilliseconds = 1000 * modelTime.inSeconds / Double(steps)
        print(String(format: "  of which forward + backward %.1f ms/step, gradient norm + clipping + AdamW %.1f ms/step",
                     modelMilliseconds, 1000 * seconds / Double(steps) - modelMilliseconds))
        if let pool = cuda?.memoryPool {
            print("  GPU memory in use \(cuda!.allocator.bytesInUse >> 20) MiB (pool cache \(pool.cachedBytes >> 20) MiB)")
        }
    }
}

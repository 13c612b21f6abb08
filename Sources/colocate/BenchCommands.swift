import ArgumentParser
import Benchmarks
import Compute

// `colocate bench …`: flags only. The measurements live in the Benchmarks module.

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (run them in release: swift run -c release colocate bench …).",
        subcommands: [BenchRL.self, BenchSync.self, BenchSyncIPC.self, BenchCopy.self, BenchDecode.self, BenchColdStart.self, BenchMatmul.self, BenchRPC.self, BenchTokenize.self, BenchTrain.self])
}

/// `colocate bench decode`: `DecodeBenchmark`.
struct BenchDecode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode", abstract: "Tokens/s of generation for a preset at several batch sizes.")

    @Option(help: "Model preset (random weights with its shapes).")
    var preset: String = "opt-125m"
    @Option(help: "Model directory instead of a preset.")
    var model: String?
    @Option(help: "Batch sizes, comma-separated.")
    var batch: String = "1,16"
    @Option(help: "Prompt tokens per sequence.")
    var promptTokens: Int = 128
    @Option(help: "New tokens per sequence.")
    var newTokens: Int = 128
    @Option(help: "Weight dtype: f32, bf16 or f16.")
    var dtype: String = "f32"
    @Option(help: "Device: cpu, cuda or cuda:N.")
    var device: String = "cpu"
    @Flag(help: "Also run rollouts of random lengths with continuous batching, beside the fixed-length figure of each batch size.")
    var variableLengths = false
    @Option(help: "With --variable-lengths: requests per batch size (default 4 × the batch size); at most `batch` run at once.")
    var requests: Int?
    @Option(help: "With --variable-lengths: the range new tokens per request are drawn from, MIN-MAX (clamped to the model's positions).")
    var lengths: String = "16-512"
    @Option(help: "With --variable-lengths: seed of the lengths and prompts.")
    var seed: UInt64 = 0

    func run() async throws {
        let sizes = try batch.split(separator: ",").map { s -> Int in
            guard let v = Int(s), v > 0 else { throw CLIError("bad batch size '\(s)'") }
            return v
        }
        guard promptTokens > 0 else { throw CLIError("--prompt-tokens must be positive, got \(promptTokens)") }
        guard newTokens > 0 else { throw CLIError("--new-tokens must be positive, got \(newTokens)") }
        var variable: DecodeBenchmark.VariableLengths?
        if variableLengths {
            let bounds = lengths.split(separator: "-").map { Int($0) }
            guard bounds.count == 2, let low = bounds[0], let high = bounds[1], low >= 1, low <= high else {
                throw CLIError("--lengths must be MIN-MAX with 1 ≤ MIN ≤ MAX, got '\(lengths)'")
            }
            if let requests, requests < 1 { throw CLIError("--requests must be positive, got \(requests)") }
            variable = DecodeBenchmark.VariableLengths(requests: requests, lengths: low...high, seed: seed)
        } else if requests != nil {
            throw CLIError("--requests needs --variable-lengths")
        }
        let backend = try Backends.make(device: device)
        let benchmark = DecodeBenchmark(
            source: model.map { .directory($0) } ?? .preset(preset), batchSizes: sizes,
            promptTokens: promptTokens, newTokens: newTokens, weightType: try CLIParse.dtype(dtype), variableLengths: variable)
        try await benchmark.run(on: backend)
    }
}

/// `colocate bench cold-start`: `ColdStartBenchmark`.
struct BenchColdStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cold-start",
        abstract: "Time from LLM(…) called to the first generated token, with where it went (processes, device, weights, KV cache).")

    @Option(help: "Device: cpu or cuda.")
    var device: String = "cpu"
    @Option(help: "Model preset: random weights with its shapes, written to a temporary directory first (not timed).")
    var preset: String = "opt-125m"
    @Option(help: "Model directory instead of a preset.")
    var model: String?
    @Option(help: "Engine weight dtype: f32, bf16 or f16 (a preset's checkpoint is written in it).")
    var dtype: String = "f32"
    @Option(help: "Fraction of the device's memory the engine may use.")
    var memoryUtilization: Double = 0.4
    @Option(help: "Prompt tokens of the first generate.")
    var promptTokens: Int = 16
    @Option(help: "Cold starts in a row, each a new engine (later ones find disk and OS caches warm).")
    var runs: Int = 1

    func run() async throws {
        var benchmark = ColdStartBenchmark()
        benchmark.device = device
        benchmark.preset = preset
        benchmark.model = model
        benchmark.dtype = dtype
        benchmark.memoryUtilization = memoryUtilization
        benchmark.promptTokens = promptTokens
        benchmark.runs = runs
        try await benchmark.run()
    }
}

/// `colocate bench matmul`: `MatmulBenchmark`.
struct BenchMatmul: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matmul",
        abstract: "Measure the CPU matmul kernels (GFLOP/s, fraction of peak, opt-125m decode estimate).")

    @Option(help: "Rows of x (tokens), comma-separated.")
    var rows: String = "1,16,128,512"

    @Option(help: "Explicit shapes NxKxO (rows × in → out), comma-separated; replaces --rows.")
    var shapes: String?

    @Option(help: "Weight dtypes, comma-separated (f32, bf16, f16).")
    var dtypes: String = "f32,bf16"

    @Option(help: "Seconds of repetitions per measurement.")
    var seconds: Double = 0.3

    @Flag(help: "Skip the opt-125m linear stack.")
    var noModel = false

    func run() throws {
        try CPUFeatures.check()
        let rowCounts = try rows.split(separator: ",").map { text -> Int in
            guard let n = Int(text.trimmingCharacters(in: " ")), n > 0 else {
                throw ValidationError("--rows: '\(text)' is not a positive integer")
            }
            return n
        }
        let types = try dtypes.split(separator: ",").map { text -> DType in
            guard let t = DType(name: String(text.trimmingCharacters(in: " "))), t.isFloatingPoint else {
                throw ValidationError("--dtypes: '\(text)' is not f32, bf16 or f16")
            }
            return t
        }
        guard seconds > 0 && seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }
        let explicit = try shapes.map { list in
            try list.split(separator: ",").map { text -> MatmulBenchmark.Shape in
                let parts = text.split(separator: "x").compactMap { Int($0) }
                guard parts.count == 3, parts.allSatisfy({ $0 > 0 }) else {
                    throw ValidationError("--shapes: '\(text)' is not NxKxO with positive integers")
                }
                return MatmulBenchmark.Shape(rows: parts[0], inFeatures: parts[1], outFeatures: parts[2])
            }
        }
        let shapes = explicit ?? rowCounts.flatMap { n in
            [MatmulBenchmark.Shape(rows: n, inFeatures: 768, outFeatures: 768),
             MatmulBenchmark.Shape(rows: n, inFeatures: 768, outFeatures: 3072),
             MatmulBenchmark.Shape(rows: n, inFeatures: 3072, outFeatures: 768)]
        }
        print(MatmulBenchmark.run(shapes: shapes, dtypes: types, seconds: seconds, includeModelStack: !noModel))
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        String(drop { $0 == set }.reversed().drop { $0 == set }.reversed())
    }
}

/// `colocate bench copy --device cuda`: `CopyBenchmark`.
struct BenchCopy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Measure device-to-device copy bandwidth: cuMemcpy against the copy_batch kernel.")

    @Option(help: "Device: cuda.")
    var device = "cuda"
    @Option(help: "Copy sizes in MB (10^6 bytes), comma-separated.")
    var sizes = "250.5,1073.7,10348.3"
    @Option(help: "copy_batch tile sizes in KiB, comma-separated.")
    var tiles = "16,64,256,1024"
    @Option(help: "Copies per measurement (median reported).")
    var iters = 10

    func run() throws {
        var benchmark = CopyBenchmark()
        benchmark.device = device
        benchmark.sizes = sizes
        benchmark.tiles = tiles
        benchmark.iters = iters
        try benchmark.run()
    }
}

/// `colocate bench rpc`: `RPCBenchmark`.
struct BenchRPC: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rpc",
        abstract: "Measure actor call round trips (p50/p99) and worker start time (spawn -> ready).")

    @Option(help: "Round trips measured per call kind.")
    var calls: Int = 20_000
    @Option(help: "Round trips before measuring.")
    var warmup: Int = 2_000
    @Option(help: "Workers started (and stopped) to measure start time.")
    var spawns: Int = 20
    @Option(help: "Control plane: unix (sockets on this host) or tcp (127.0.0.1, authenticated by the cluster secret).")
    var transport: String = "unix"
    @Option(help: ClusterChoice.help)
    var cluster: String = "local"
    @Option(help: "Also measure a 2-rank data-parallel all-reduce of this many f32 over the control plane (0: skip).")
    var allreduceFloats: Int = 0

    func run() async throws {
        var benchmark = RPCBenchmark()
        benchmark.allReduceFloats = allreduceFloats
        switch transport {
        case "unix": benchmark.transport = .unix
        case "tcp": benchmark.transport = .tcp(bindHost: "127.0.0.1", advertisedHost: "127.0.0.1")
        default: throw CLIError("--transport must be unix or tcp, not '\(transport)'")
        }
        benchmark.rayAddress = try ClusterChoice(parsing: cluster).rayAddress
        benchmark.calls = calls
        benchmark.warmup = warmup
        benchmark.spawns = spawns
        try await benchmark.run()
    }
}

/// `colocate bench sync`: `SyncBenchmark`.
struct BenchSync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync", abstract: "Weight sync time, trainer export → every engine rank updated (median of warm runs).")

    @Option(help: "Devices: cpu:N or cpu:N:SIZE (default cpu:2), or cuda (default with --device cuda).")
    var devices: String?
    @Option(name: .customLong("tp"), help: "Tensor-parallel size of each engine.")
    var tensorParallelSize: Int = 2
    @Option(help: "Model preset (created once in the cache) when no --model is given.")
    var preset: String = "opt-125m"
    @Option(help: "Model directory.")
    var model: String?
    @Option(help: "Engine weight dtype: f32, bf16 or f16 (trainers hold f32).")
    var engineDtype: String = "f32"
    @Option(help: "Timed iterations (after one warm-up).")
    var iterations: Int = 5
    @Option(help: "Device kind: cpu or cuda.")
    var device: String = "cpu"
    @Option(help: "pull: engine ranks copy from the trainers' exports (the seed's way); push: trainers copy into the engine ranks' weights.")
    var method: String = "pull"
    @Option(help: ClusterChoice.help)
    var cluster: String = "local"

    func run() async throws {
        var benchmark = SyncBenchmark()
        benchmark.rayAddress = try ClusterChoice(parsing: cluster).rayAddress
        benchmark.devices = devices
        benchmark.tensorParallelSize = tensorParallelSize
        benchmark.model = try model ?? ModelCache.ensure(preset: preset) { print($0) }
        benchmark.engineDtype = engineDtype
        benchmark.iterations = iterations
        benchmark.device = device
        benchmark.method = method
        try await benchmark.run()
    }
}

/// `colocate bench sync-ipc --device cuda`: `SyncIPCBenchmark`.
struct BenchSyncIPC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync-ipc",
        abstract: "Measure trainer → engine weight sync through CUDA IPC (one flat buffer, one handle).")

    @Option(help: "Device: cuda.")
    var device = "cuda"
    @Option(help: "Model shapes: opt-125m, opt-10gb, or another preset.")
    var preset = "opt-125m"
    @Option(help: "Trainer weight dtype: f32, bf16 or f16.")
    var dtype = "f16"
    @Option(help: "Engine weight dtype (default: the trainer's; a different one converts in the copy).")
    var engineDtype: String?
    @Option(help: "Warm syncs per variant.")
    var iters = 20
    @Option(help: "Idle time between the trainer's last GPU work and the sync, in ms (0: sync right after, as in RL).")
    var settleMs = 0
    @Option(help: "Tensor-parallel size: engine ranks, one per GPU (each GPU also holds a trainer).")
    var tp = 1
    @Option(help: "How a rank runs an update's copies: batched (one copy_batch launch) or per-copy (one driver call each).")
    var copyMethod = "batched"
    @Flag(help: "Also report the GPU time of each rank's copies (CUDA events around them).")
    var gpuTiming = false
    @Option(help: "How the weight buffers are shared: fd (cuMemCreate, a file descriptor) or ipc (cuMemAlloc, CUDA IPC). Default: fd where the GPU supports it.")
    var sharing: String?
    @Flag(help: .hidden)
    var child = false
    @Option(help: .hidden)
    var rank = 0

    func run() throws {
        var benchmark = SyncIPCBenchmark()
        benchmark.device = device
        benchmark.preset = preset
        benchmark.dtype = dtype
        benchmark.engineDtype = engineDtype
        benchmark.iters = iters
        benchmark.settleMs = settleMs
        benchmark.tp = tp
        benchmark.copyMethod = copyMethod
        benchmark.gpuTiming = gpuTiming
        benchmark.sharing = sharing
        benchmark.child = child
        benchmark.rank = rank
        try benchmark.run()
    }
}

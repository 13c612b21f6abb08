import ArgumentParser
import Compute

/// `colocate bench matmul`: GFLOP/s of the CPU linear kernels and the opt-125m linear stack.
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

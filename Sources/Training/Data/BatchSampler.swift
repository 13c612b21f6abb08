import Compute

/// Which rows each optimizer step trains on. Rows are consumed as a stream: without shuffling, step
/// i's batch is rows [iB, iB + B) mod N, in order; with shuffling, each pass over the data (epoch) is
/// a fresh permutation drawn from `seed` and the epoch number, so a step's rows depend only on
/// (seed, step) and a resumed run continues exactly where it stopped.
///
/// Data parallelism: rank r of W takes the contiguous rows [r·B/W, (r+1)·B/W) of each global batch and
/// splits them, in order, into its micro-batches (gradient accumulation).
public struct BatchSampler: Sendable, Equatable {
    public var rows: Int
    public var batchSize: Int
    public var shuffle: Bool
    public var seed: UInt64

    public init(rows: Int, batchSize: Int, shuffle: Bool = false, seed: UInt64 = 0) {
        precondition(rows > 0 && batchSize > 0)
        self.rows = rows
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
    }

    /// The row indices of step `step`'s global batch (step counts from 0).
    public func batch(_ step: Int) -> [Int] { rows(from: step * batchSize) }

    /// The `batchSize` rows at stream position `start` (rows consumed before them).
    public func rows(from start: Int) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(batchSize)
        var cachedEpoch = -1
        var permutation: [Int] = []
        for k in 0..<batchSize {
            let position = start + k
            let epoch = position / rows, index = position % rows
            guard shuffle else { out.append(index); continue }
            if epoch != cachedEpoch {
                permutation = Self.permutation(count: rows, seed: seed, epoch: epoch)
                cachedEpoch = epoch
            }
            out.append(permutation[index])
        }
        return out
    }

    /// A Fisher–Yates permutation of 0..<count drawn from (seed, epoch).
    static func permutation(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var rng = SplitMix64(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
        var p = Array(0..<count)
        if count < 2 { return p }
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            p.swapAt(i, j)
        }
        return p
    }
}

/// One micro-batch of a rank: its token rows and per-token loss weights, already divided by the
/// global token count of the step (so the objective's loss sums to the step's mean over every rank).
public struct MicroBatch: Sendable, Codable, Equatable {
    public var batch: TokenBatch
    public var weights: [Float]

    public init(batch: TokenBatch, weights: [Float]) {
        self.batch = batch
        self.weights = weights
    }

    /// The micro-batches of every rank for one step: `rows` (the global batch) split into `ranks`
    /// contiguous shards, each into `accumulation` micro-batches; weights are the loss mask over the
    /// mask's total on the whole global batch. Result [rank][micro].
    public static func split(_ data: TrainingData, rows: [Int], ranks: Int, accumulation: Int) throws -> [[MicroBatch]] {
        let parts = ranks * accumulation
        guard rows.count % parts == 0 else {
            throw TrainingError("a batch of \(rows.count) rows does not split into \(ranks) trainer\(ranks == 1 ? "" : "s") × \(accumulation) micro-batch\(accumulation == 1 ? "" : "es"); use a batch size divisible by \(parts)")
        }
        let total = rows.reduce(0.0) { sum, r in sum + data.row(r).mask.reduce(0.0) { $0 + Double($1) } }
        guard total > 0 else { throw TrainingError("the batch of rows \(rows.prefix(8).map(String.init).joined(separator: ", ")) has no token to train on") }
        let per = rows.count / parts
        return (0..<ranks).map { rank in
            (0..<accumulation).map { micro in
                let chosen = rows[(rank * accumulation + micro) * per..<(rank * accumulation + micro + 1) * per]
                var ids: [Int32] = [], weights: [Float] = []
                for r in chosen {
                    let (i, m) = data.row(r)
                    ids += i
                    weights += m.map { Float(Double($0) / total) }
                }
                return MicroBatch(batch: TokenBatch(ids: ids, batch: per, sequence: data.sequence), weights: weights)
            }
        }
    }
}

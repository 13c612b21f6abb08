import Compute
import Models
import Testing
import WeightSync
@testable import Training

@Suite struct OptimizerTests {
    @Test func constantScheduleWithWarmup() {
        let s = LearningRateSchedule(kind: .constant, peak: 1e-3, warmupSteps: 4, totalSteps: 10)
        #expect(s.rate(atStep: 0) == 1e-3 / 4)
        #expect(s.rate(atStep: 3) == 1e-3)
        #expect(s.rate(atStep: 9) == 1e-3)
    }

    @Test func cosineScheduleDecaysFromPeakToMinimum() {
        let s = LearningRateSchedule(kind: .cosine, peak: 1.0, warmupSteps: 2, totalSteps: 12, minimum: 0.1)
        #expect(s.rate(atStep: 0) == 0.5)
        #expect(s.rate(atStep: 2) == 1.0)
        // Halfway through the decay: the mean of peak and minimum.
        #expect(abs(s.rate(atStep: 7) - 0.55) < 1e-6)
        #expect(abs(s.rate(atStep: 12) - 0.1) < 1e-6)
        let rates = (2..<12).map { s.rate(atStep: $0) }
        #expect(zip(rates, rates.dropFirst()).allSatisfy { $0 > $1 })
    }

    @Test func weightDecayCoversExactlyTheMatrices() throws {
        let config = try ModelConfig.load(directory: trainLoopFixtures() + "/llama-tiny")
        let layout = WeightLayout(table: ParameterTable(config: config), dtype: .f32)
        let ranges = AdamW.decayRanges(of: layout)
        func decayed(_ i: Int) -> Bool { ranges.contains { $0.contains(i) } }
        for e in layout.entries {
            let first = e.offset / 4, last = first + e.count - 1
            #expect(decayed(first) == (e.shape.count >= 2), "\(e.name)")
            #expect(decayed(last) == (e.shape.count >= 2), "\(e.name)")
        }
    }

    @Test func batchesWalkTheRowsInOrderAndWrap() {
        let s = BatchSampler(rows: 5, batchSize: 2)
        #expect(s.batch(0) == [0, 1])
        #expect(s.batch(2) == [4, 0])
        #expect(s.batch(3) == [1, 2])
    }

    @Test func shuffledBatchesArePermutationsFixedBySeed() {
        let a = BatchSampler(rows: 8, batchSize: 4, shuffle: true, seed: 3)
        let b = BatchSampler(rows: 8, batchSize: 4, shuffle: true, seed: 3)
        let c = BatchSampler(rows: 8, batchSize: 4, shuffle: true, seed: 4)
        #expect((0..<4).map(a.batch) == (0..<4).map(b.batch))
        #expect((0..<2).map(a.batch) != (0..<2).map(c.batch))
        #expect(Set(a.batch(0) + a.batch(1)) == Set(0..<8))
        #expect(Set(a.batch(2) + a.batch(3)) == Set(0..<8))
    }

    @Test func microBatchWeightsAreNormalisedByTheGlobalTokenCount() throws {
        var mask = [Float](repeating: 1, count: 4 * 5)
        mask[7] = 0
        let data = TrainingData(ids: (0..<20).map { Int32($0) }, lossMask: mask, rows: 4, sequence: 5)
        let parts = try MicroBatch.split(data, rows: [0, 1, 2, 3], ranks: 2, accumulation: 2)
        #expect(parts.count == 2 && parts.allSatisfy { $0.count == 2 })
        // 4 rows × 4 predicted tokens, one masked: 15 tokens, each 1/15.
        let all = parts.flatMap { $0 }.flatMap(\.weights)
        #expect(abs(all.reduce(0, +) - 1) < 1e-6)
        #expect(all.filter { $0 != 0 }.count == 15)
        // Rank 1's second micro-batch is row 3, whole.
        #expect(parts[1][1].batch.ids == Array(15..<20))
        #expect(throws: TrainingError.self) { try MicroBatch.split(data, rows: [0, 1, 2], ranks: 2, accumulation: 1) }
    }
}

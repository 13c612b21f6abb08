import Cluster
import Compute
import Foundation
import Models
import Testing
import Training

/// The driver-side ``TrainerGroup`` as the RL loop uses it: real trainer worker processes of the built
/// binary on virtual CPU devices, all-reducing through the driver's shared-memory segment.
@Suite(.serialized) struct TrainerGroupSystemTests {
    @Test func dataParallelRanksStayBitIdenticalAndMatchOneRank() async throws {
        let model = try colocateFixtures() + "/llama-tiny"
        let golden = try SafeTensorsFile(path: model + "/train_golden.safetensors")
        let t = try golden.tensor("input_ids")
        let ids = UnsafeBufferPointer(start: t.rawPointer.assumingMemoryBound(to: Int64.self), count: t.count).map { Int32($0) }
        let data = TrainingData(ids: ids, rows: t.shape[0], sequence: t.shape[1])
        let dir = NSTemporaryDirectory() + "colocate-trainer-group-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try ModelConfig.load(directory: model)
        let hyper = AdamWHyperparameters(learningRate: 3e-3, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        let state = TrainerState(step: 0, schedule: .constant(3e-3), hyper: hyper, maxGradNorm: 1, dataPosition: 0, batchSize: 4,
                                 gradientAccumulation: 1, shuffle: false, seed: 0, model: ModelFingerprint(config: config))

        var options = ClusterOptions()
        options.workerExecutable = colocateBinary().path
        let cluster = try Cluster.local(devices: .cpu(count: 3, capacity: 1 << 30), options: options)
        do {
            let pg = try cluster.placementGroup(Array(repeating: ResourceBundle(gpu: 1), count: 3))
            try await pg.ready()
            let two = try await TrainerGroup(cluster: cluster, group: pg, bundles: [0, 1], modelDirectory: model, name: "dp")
            let one = try await TrainerGroup(cluster: cluster, group: pg, bundles: [2], modelDirectory: model, name: "single")
            for g in [two, one] {
                try await g.configure(ConfigureOptimizer(hyper: hyper, schedule: .constant(3e-3), maxGradNorm: 1))
            }
            for step in 0..<2 {
                let rows = Array(4 * step..<4 * step + 4)
                let a = try await two.step(try MicroBatch.split(data, rows: rows, ranks: 2, accumulation: 1))
                let b = try await one.step(try MicroBatch.split(data, rows: rows, ranks: 1, accumulation: 1))
                #expect(a.step == step + 1 && b.step == step + 1)
                #expect(a.tokens == b.tokens)
                #expect(abs(a.loss - b.loss) < 1e-5)
                #expect(abs(a.gradNorm - b.gradNorm) < 1e-5 * b.gradNorm)
            }
            // Each rank saves its own weights: the all-reduce gives every rank the same sum, bit for bit.
            for (rank, trainer) in two.trainers.enumerated() {
                _ = try await trainer.call(SaveCheckpoint(directory: dir + "/rank\(rank)", modelDirectory: model, state: state))
            }
            try await one.save(to: dir + "/single", state: state)
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
        let rank0 = try Data(contentsOf: URL(fileURLWithPath: dir + "/rank0/model.safetensors"))
        let rank1 = try Data(contentsOf: URL(fileURLWithPath: dir + "/rank1/model.safetensors"))
        #expect(rank0 == rank1)
        let a = try SafeTensorsFile(path: dir + "/rank0/model.safetensors"), b = try SafeTensorsFile(path: dir + "/single/model.safetensors")
        for name in a.tensorNames {
            let worst = zip(try a.tensor(name).floats(), try b.tensor(name).floats()).map { abs($0 - $1) }.max() ?? 0
            #expect(worst < 1e-5, "\(name): DP 2 differs from DP 1 by \(worst)")
        }
    }
}

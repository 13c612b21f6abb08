import Cluster
import Compute
import Foundation
import Models
import Testing
import Training

/// The driver-side ``TrainerGroup`` as the RL loop uses it: real trainer worker processes of the built
/// binary on virtual CPU devices, all-reducing through the driver's shared-memory segment, or over the
/// control plane when the trainers count as separate hosts.
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

    /// Trainers on different hosts cannot map the driver's segment: their gradients go over the
    /// control plane through rank 0. Here every worker counts as a host of its own (TCP between them),
    /// and three ranks all-reducing that way end bit for bit where three ranks on shared memory do:
    /// both add the ranks' gradients in rank order.
    @Test func controlPlaneAllReduceAcrossHostsEqualsSharedMemoryBitForBit() async throws {
        let model = try colocateFixtures() + "/llama-tiny"
        let golden = try SafeTensorsFile(path: model + "/train_golden.safetensors")
        let t = try golden.tensor("input_ids")
        let ids = UnsafeBufferPointer(start: t.rawPointer.assumingMemoryBound(to: Int64.self), count: t.count).map { Int32($0) }
        let data = TrainingData(ids: ids, rows: t.shape[0], sequence: t.shape[1])
        let dir = NSTemporaryDirectory() + "colocate-trainer-group-cp-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try ModelConfig.load(directory: model)
        let hyper = AdamWHyperparameters(learningRate: 3e-3, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        let state = TrainerState(step: 0, schedule: .constant(3e-3), hyper: hyper, maxGradNorm: 1, dataPosition: 0, batchSize: 6,
                                 gradientAccumulation: 1, shuffle: false, seed: 0, model: ModelFingerprint(config: config))
        var losses: [[Double]] = []
        for acrossHosts in [false, true] {
            var options = ClusterOptions()
            options.workerExecutable = colocateBinary().path
            if acrossHosts {
                options.controlPlane = .tcp(bindHost: "127.0.0.1", advertisedHost: "127.0.0.1")
                options.environment[WorkerEnvironment.hostIdentityKey] = "process"
            }
            let cluster = try Cluster.local(devices: .cpu(count: 3, capacity: 1 << 30), options: options)
            do {
                let pg = try cluster.placementGroup(Array(repeating: ResourceBundle(gpu: 1), count: 3))
                try await pg.ready()
                let group = try await TrainerGroup(cluster: cluster, group: pg, bundles: [0, 1, 2], modelDirectory: model, name: "dp")
                #expect(group.transport == (acrossHosts ? .controlPlane : .sharedMemory))
                #expect(group.hosts.count == (acrossHosts ? 3 : 1))
                try await group.configure(ConfigureOptimizer(hyper: hyper, schedule: .constant(3e-3), maxGradNorm: 1))
                var run: [Double] = []
                for step in 0..<2 {
                    let rows = Array(6 * step..<6 * step + 6).map { $0 % data.rows }
                    let stats = try await group.step(try MicroBatch.split(data, rows: rows, ranks: 3, accumulation: 1))
                    run += [stats.loss, stats.gradNorm]
                }
                losses.append(run)
                try await group.save(to: dir + (acrossHosts ? "/hosts" : "/shm"), state: state)
            } catch {
                await cluster.shutdown()
                throw error
            }
            await cluster.shutdown()
        }
        #expect(losses[0] == losses[1])
        let shm = try Data(contentsOf: URL(fileURLWithPath: dir + "/shm/model.safetensors"))
        let hosts = try Data(contentsOf: URL(fileURLWithPath: dir + "/hosts/model.safetensors"))
        #expect(shm == hosts, "the control-plane all-reduce's weights differ from the shared-memory one's")
    }

    /// A trainer that dies before a step: the driver's call to it fails naming it, and the ranks
    /// waiting in the control-plane all-reduce for it return at once with the reason instead of at
    /// their deadline. Before any step, the driver aborts the all-reduce (rank 0 has never heard from
    /// the dead rank); after one, rank 0 sees the dead rank's connection end.
    @Test(.timeLimit(.minutes(3)), arguments: [false, true])
    func deadTrainerEndsTheControlPlaneAllReduceOnEveryRank(afterAStep: Bool) async throws {
        let model = try colocateFixtures() + "/llama-tiny"
        let golden = try SafeTensorsFile(path: model + "/train_golden.safetensors")
        let t = try golden.tensor("input_ids")
        let ids = UnsafeBufferPointer(start: t.rawPointer.assumingMemoryBound(to: Int64.self), count: t.count).map { Int32($0) }
        let data = TrainingData(ids: ids, rows: t.shape[0], sequence: t.shape[1])
        var options = ClusterOptions()
        options.workerExecutable = colocateBinary().path
        options.controlPlane = .tcp(bindHost: "127.0.0.1", advertisedHost: "127.0.0.1")
        options.environment[WorkerEnvironment.hostIdentityKey] = "process"
        let cluster = try Cluster.local(devices: .cpu(count: 3, capacity: 1 << 30), options: options)
        do {
            let pg = try cluster.placementGroup(Array(repeating: ResourceBundle(gpu: 1), count: 3))
            try await pg.ready()
            let group = try await TrainerGroup(cluster: cluster, group: pg, bundles: [0, 1, 2], modelDirectory: model, name: "dp")
            #expect(group.transport == .controlPlane)
            try await group.configure(ConfigureOptimizer(hyper: AdamWHyperparameters(learningRate: 1e-3), schedule: .constant(1e-3), maxGradNorm: 1))
            if afterAStep {
                _ = try await group.step(try MicroBatch.split(data, rows: [0, 1, 2].map { $0 % data.rows }, ranks: 3, accumulation: 1))
            }
            group.trainers[2].kill()
            do {
                _ = try await group.step(try MicroBatch.split(data, rows: [3, 4, 5].map { $0 % data.rows }, ranks: 3, accumulation: 1))
                Issue.record("a step with a dead rank returned")
            } catch let error as ActorDiedError {
                #expect(error.actor == "dp-2")
            }
            // The survivors' all-reduce is aborted for good: the next step fails at once too.
            let survivors = try await withThrowingTaskGroup(of: String.self) { tasks in
                for rank in 0..<2 {
                    let batch = try MicroBatch.split(data, rows: [0, 1, 2].map { $0 % data.rows }, ranks: 3, accumulation: 1)[rank]
                    let trainer = group.trainers[rank]
                    tasks.addTask {
                        do {
                            _ = try await trainer.call(TrainStep(microBatches: batch))
                            return "returned"
                        } catch let error as RemoteError {
                            return error.message
                        }
                    }
                }
                return try await tasks.reduce(into: []) { $0.append($1) }
            }
            for message in survivors {
                // After a step rank 0 may see rank 2's connection end before the driver's abort arrives, or
                // after it: either reason names the dead rank.
                let reasons = afterAStep ? ["rank 2's connection to rank 0 ended", "dp-2 failed"] : ["dp-2 failed"]
                #expect(message.contains("all-reduce 'dp-gradients' was aborted") && reasons.contains { message.contains($0) }, "\(message)")
                #expect(!message.contains("\n"))
            }
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }
}

import Cluster
import Colocation
import Compute
import Testing

@Suite("Colocated layout")
struct ColocatedLayoutTests {
    let devices = try! VirtualCPUDevices(count: 4, capacity: 1 << 30).devices()

    @Test func seedLayout() throws {
        let layout = try ColocatedLayout(devices: devices, tensorParallelSize: 2, trainerFraction: 0.4, workerFraction: 0.4)
        #expect(layout.trainers.map(\.bundleIndex) == [0, 1, 2, 3])
        #expect(layout.engines.count == 2)
        #expect(layout.bundleIndices(ofEngine: 0) == [0, 1])
        #expect(layout.bundleIndices(ofEngine: 1) == [2, 3])
        #expect(layout.engines[1].map(\.name) == ["engine-1-rank0", "engine-1-rank1"])
        let table = layout.table()
        for d in devices { #expect(table.contains(d.uuid)) }
        #expect(table.contains("trainer-2 0.4, engine-1-rank0 0.4"))
    }

    @Test func refusesInfeasibleLayouts() throws {
        let overfill = try #require(throws: ClusterError.self) {
            try ColocatedLayout(devices: devices, tensorParallelSize: 2, trainerFraction: 0.7, workerFraction: 0.4)
        }
        #expect(overfill.message.contains("bundle 0") && overfill.message.contains("trainer-0: 0.7"))
        let tp = try #require(throws: ClusterError.self) {
            try ColocatedLayout(devices: devices, tensorParallelSize: 3, trainerFraction: 0.4, workerFraction: 0.4)
        }
        #expect(tp.message.contains("does not divide"))
        let engines = try #require(throws: ClusterError.self) {
            try ColocatedLayout(devices: devices, tensorParallelSize: 2, trainerFraction: 0.4, workerFraction: 0.4, engineCount: 3)
        }
        #expect(engines.message.contains("asked for 3"))
        #expect(throws: ClusterError.self) {
            try ColocatedLayout(devices: devices, tensorParallelSize: 2, trainerFraction: 0.4, workerFraction: 1.5)
        }
        let exact = try ColocatedLayout(devices: devices, tensorParallelSize: 4, trainerFraction: 0.6, workerFraction: 0.4, engineCount: 1)
        #expect(exact.engines.count == 1 && exact.bundleIndices(ofEngine: 0) == [0, 1, 2, 3])
    }
}

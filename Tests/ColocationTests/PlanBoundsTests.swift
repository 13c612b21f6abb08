import Colocation
import Compute
import Testing

@testable import Cluster

/// Device counts are bounded with a clear message, and planning the largest node allowed is linear
/// work (it was quadratic: `plan --devices cpu:30000` took 71 s, `cpu:4294967296` aborted).
@Suite struct PlanBoundsTests {
    @Test func deviceCountsBeyondTheMaximumAreRefused() throws {
        for text in ["cpu:4294967296", "cpu:30000", "cpu:4097", "cpu:9223372036854775807:1GiB"] {
            #expect { try DeviceSpec(parsing: text) } throws: {
                "\($0)".contains("exceeds the maximum of \(VirtualCPUDevices.maximumCount) virtual CPU devices")
            }
        }
        #expect { try VirtualCPUDevices(count: 1 << 32).devices() } throws: { "\($0)".contains("more than the maximum of 4096") }
        guard case .cpu(4096, nil) = try DeviceSpec(parsing: "cpu:4096") else { Issue.record("cpu:4096"); return }
    }

    @Test func theLargestNodePlansWithEveryBundleInTheTable() throws {
        let devices = try VirtualCPUDevices(count: VirtualCPUDevices.maximumCount, capacity: 1 << 20).devices()
        let layout = try ColocatedLayout(devices: devices, tensorParallelSize: 2, trainerFraction: 0.4, workerFraction: 0.4)
        #expect(layout.trainers.count == 4096 && layout.engines.count == 2048)
        let table = layout.table()
        let rows = table.split(separator: "\n").filter { $0.contains("trainer-") && !$0.hasPrefix("placement") }
        #expect(rows.count == 4096)
        // Bundle 4095 holds trainer 4095 and rank 1 of engine 2047, and nothing else.
        let last = try #require(rows.last)
        #expect(last.hasPrefix("4095 ") && last.contains("trainer-4095 0.4") && last.contains("engine-2047-rank1 0.4") && last.hasSuffix("0.8"))
    }

    @Test func reservationsBeyondTheDeviceStillSayWhatTheBundleHolds() throws {
        let devices = try VirtualCPUDevices(count: 2, capacity: 1 << 20).devices()
        #expect { try ColocatedLayout(devices: devices, tensorParallelSize: 2, trainerFraction: 0.7, workerFraction: 0.4) } throws: {
            "\($0)".contains("holds 0.7 of its device (trainer-0: 0.7)")
        }
    }
}

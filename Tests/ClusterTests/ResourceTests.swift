import Compute
import Testing
@testable import Cluster

@Suite("Resources")
struct ResourceTests {
    @Test func parsesDeviceSpecs() throws {
        guard case .cpu(4, nil) = try DeviceSpec(parsing: "cpu:4") else { Issue.record("cpu:4"); return }
        guard case .cpu(4, 2 << 30) = try DeviceSpec(parsing: "cpu:4:2GiB") else { Issue.record("cpu:4:2GiB"); return }
        guard case .cuda = try DeviceSpec(parsing: "cuda") else { Issue.record("cuda"); return }
        for bad in ["gpu:2", "cpu", "cpu:0", "cpu:x", "cpu:2:lots", "cpu:1:2:3", ""] {
            #expect(throws: ClusterError.self, "\(bad)") { try DeviceSpec(parsing: bad) }
        }
        let error = try #require(throws: ClusterError.self) { try DeviceSpec(parsing: "tpu:1") }
        #expect(error.message.contains("valid forms: cpu:N"))
        let cuda = try #require(throws: ClusterError.self) { try DeviceSpec.cuda.devices() }
        #expect(cuda.message.contains("CUDA"))
    }

    @Test func virtualDevicesHaveStableDistinctUUIDsAndCapacities() throws {
        let a = try DeviceSpec.cpu(count: 4, capacity: 2 << 30).devices()
        let b = try VirtualCPUDevices(count: 4, capacity: 2 << 30).devices()
        #expect(a == b)
        #expect(Set(a.map(\.uuid)).count == 4)
        #expect(a.map(\.ordinal) == [0, 1, 2, 3])
        #expect(a.allSatisfy { $0.kind == .cpu && $0.capacity == 2 << 30 })
        for d in a {
            let parts = d.uuid.split(separator: "-")
            #expect(parts.first == "CPU" && parts.dropFirst().map(\.count) == [8, 4, 4, 4, 12], "\(d.uuid)")
        }
        let split = try VirtualCPUDevices(count: 3).devices()
        #expect(split.allSatisfy { $0.capacity > 0 && $0.capacity * 3 <= VirtualCPUDevices.physicalMemory })
        let tooBig = try #require(throws: ClusterError.self) {
            try VirtualCPUDevices(count: 2, capacity: VirtualCPUDevices.physicalMemory).devices()
        }
        #expect(tooBig.message.contains("exceed"))
    }

    @Test func byteCounts() throws {
        #expect(try ByteCount.parse("2GiB") == 2 << 30)
        #expect(try ByteCount.parse("512MiB") == 512 << 20)
        #expect(try ByteCount.parse("1.5G") == 3 << 29)
        #expect(try ByteCount.parse("4096") == 4096)
        #expect(throws: ClusterError.self) { try ByteCount.parse("-1G") }
        #expect(ByteCount.format(6 << 30) == "6.0 GiB")
    }

    @Test func sharesUseIntegerUnits() throws {
        let sum = try DeviceShare(fraction: 0.6) + DeviceShare(fraction: 0.4)
        #expect(sum == .whole)
        #expect(try DeviceShare(fraction: 0.1) + DeviceShare(fraction: 0.2) == DeviceShare(fraction: 0.3))
        #expect(try DeviceShare(fraction: 1.0 / 3.0).description == "0.3333")
        #expect(try DeviceShare(fraction: 1).description == "1")
        for bad in [0, -0.1, 1.0001, .nan, .infinity, 0.00004] {
            let error = try #require(throws: ClusterError.self, "\(bad)") { try DeviceShare(fraction: bad) }
            #expect(error.message.contains("fraction"))
        }
    }

    @Test func strategiesParseWithRayNames() throws {
        #expect(try PlacementStrategy(parsing: "PACK") == .pack)
        #expect(try PlacementStrategy(parsing: "spread") == .spread)
        #expect(try PlacementStrategy(parsing: "STRICT_PACK") == .strictPack)
        #expect(try PlacementStrategy(parsing: "strict-spread") == .strictSpread)
        let error = try #require(throws: ClusterError.self) { try PlacementStrategy(parsing: "RANDOM") }
        #expect(error.message.contains("PACK, SPREAD, STRICT_PACK, STRICT_SPREAD"))
    }
}

@Suite("Resource ledger")
struct LedgerTests {
    let devices = try! VirtualCPUDevices(count: 4, capacity: 1 << 30).devices()
    let gpu = ResourceBundle(gpu: 1, cpu: 0)

    @Test(arguments: [PlacementStrategy.pack, .spread, .strictPack])
    func packingStrategiesPlaceAllBundlesOnTheNode(strategy: PlacementStrategy) throws {
        var ledger = ResourceLedger(devices: devices, cpus: 2)
        let id = try ledger.createGroup(name: "g", bundles: [gpu, gpu, gpu, ResourceBundle(gpu: 1, cpu: 2)], strategy: strategy)
        #expect(ledger.state(ofGroup: id) == .created)
        #expect(ledger.bundleDevices(ofGroup: id).map { $0?.ordinal } == [0, 1, 2, 3])
    }

    @Test func strictSpreadFitsOneBundleOnly() throws {
        var ledger = ResourceLedger(devices: devices, cpus: 2)
        let one = try ledger.createGroup(name: "one", bundles: [gpu], strategy: .strictSpread)
        #expect(ledger.state(ofGroup: one) == .created)
        let error = try #require(throws: ClusterError.self) {
            try ledger.createGroup(name: "two", bundles: [gpu, gpu], strategy: .strictSpread)
        }
        #expect(error.message.contains("STRICT_SPREAD") && error.message.contains("1 node"))
    }

    @Test func infeasibleAndInvalidGroupsAreErrors() throws {
        var ledger = ResourceLedger(devices: devices, cpus: 2)
        let tooMany = try #require(throws: ClusterError.self) {
            try ledger.createGroup(name: "g", bundles: Array(repeating: gpu, count: 5), strategy: .pack)
        }
        #expect(tooMany.message.contains("5 GPUs") && tooMany.message.contains("4 devices"))
        let cpus = try #require(throws: ClusterError.self) {
            try ledger.createGroup(name: "g", bundles: [ResourceBundle(gpu: 0, cpu: 3)], strategy: .pack)
        }
        #expect(cpus.message.contains("3 CPUs"))
        let empty = try #require(throws: ClusterError.self) {
            try ledger.createGroup(name: "g", bundles: [gpu, ResourceBundle(gpu: 0, cpu: 0)], strategy: .pack)
        }
        #expect(empty.message.contains("bundle 1 is empty"))
        let twoGPUs = try #require(throws: ClusterError.self) {
            try ledger.createGroup(name: "g", bundles: [ResourceBundle(gpu: 2, cpu: 0)], strategy: .pack)
        }
        #expect(twoGPUs.message.contains("0 or 1 GPU"))
        #expect(throws: ClusterError.self) { try ledger.createGroup(name: "g", bundles: [], strategy: .pack) }
    }

    @Test func groupsWaitForDevicesHeldByOthers() throws {
        var ledger = ResourceLedger(devices: devices, cpus: 2)
        let first = try ledger.createGroup(name: "first", bundles: [gpu, gpu, gpu], strategy: .pack)
        let second = try ledger.createGroup(name: "second", bundles: [gpu, gpu], strategy: .pack)
        #expect(ledger.state(ofGroup: second) == .pending)
        _ = ledger.removeGroup(first)
        #expect(ledger.state(ofGroup: second) == .created)
        #expect(ledger.state(ofGroup: first) == .removed)
    }

    @Test func sharesFitExactlyAndOverfillNamesTheBundle() throws {
        var ledger = ResourceLedger(devices: devices, cpus: 0)
        let g = try ledger.createGroup(name: "pg", bundles: [gpu, gpu], strategy: .pack)
        let four = try DeviceShare(fraction: 0.4)
        #expect(try ledger.reserveShare(group: g, bundle: 0, share: four, holderID: 1, holderName: "a") == .granted(devices[0]))
        #expect(try ledger.reserveShare(group: g, bundle: 0, share: four, holderID: 2, holderName: "b") == .granted(devices[0]))
        let third = try ledger.reserveShare(group: g, bundle: 0, share: four, holderID: 3, holderName: "c")
        guard case .busy(let why) = third else { Issue.record("a third 0.4 fit: \(third)"); return }
        #expect(why.contains("bundle 0") && why.contains("a: 0.4, b: 0.4") && why.contains("asked for 0.4")
                && why.contains(devices[0].uuid))
        ledger.releaseShare(group: g, bundle: 0, holderID: 1)
        #expect(try ledger.reserveShare(group: g, bundle: 0, share: four, holderID: 3, holderName: "c") == .granted(devices[0]))

        #expect(try ledger.reserveShare(group: g, bundle: 1, share: DeviceShare(fraction: 0.6), holderID: 4, holderName: "d") == .granted(devices[1]))
        #expect(try ledger.reserveShare(group: g, bundle: 1, share: DeviceShare(fraction: 0.4), holderID: 5, holderName: "e") == .granted(devices[1]))
        #expect(try ledger.reserveShare(group: g, bundle: 1, share: DeviceShare(units: 1), holderID: 6, holderName: "f") != .granted(devices[1]))
        #expect(try ledger.reserveShare(group: g, bundle: 1, share: .zero, holderID: 7, holderName: "g") == .granted(nil))
    }

    @Test func invalidShareRequestsSayWhatIsValid() throws {
        var ledger = ResourceLedger(devices: devices, cpus: 2)
        let g = try ledger.createGroup(name: "pg", bundles: [gpu, ResourceBundle(gpu: 0, cpu: 1)], strategy: .pack)
        let range = try #require(throws: ClusterError.self) {
            try ledger.reserveShare(group: g, bundle: 2, share: .whole, holderID: 1, holderName: "a")
        }
        #expect(range.message.contains("bundle index 2 is out of range") && range.message.contains("0...1"))
        let noGPU = try #require(throws: ClusterError.self) {
            try ledger.reserveShare(group: g, bundle: 1, share: .whole, holderID: 1, holderName: "a")
        }
        #expect(noGPU.message.contains("holds no GPU"))
        _ = ledger.removeGroup(g)
        let removed = try #require(throws: ClusterError.self) {
            try ledger.reserveShare(group: g, bundle: 0, share: .whole, holderID: 1, holderName: "a")
        }
        #expect(removed.message.contains("removed"))
    }
}

import Compute
import Testing

/// A share of a device's memory: rounded down, and "no limit" where the product does not fit an Int.
@Suite struct DeviceShareTests {
    @Test func sharesRoundDownAndTheHostsIsUnlimited() {
        let gpu = Device(kind: .cuda, ordinal: 0, uuid: "GPU-x", capacity: 1000)
        #expect(gpu.share(0.4) == 400)
        #expect(gpu.share(1) == 1000)
        #expect(gpu.share(0.0015) == 1)
        // Before: Int(Double(Int.max) * 1) trapped (a trainer or engine placed on the host device).
        #expect(Device.host.share(1) == Int.max)
        #expect(Device.host.share(0.5) == Int.max / 2 + 1)
    }
}

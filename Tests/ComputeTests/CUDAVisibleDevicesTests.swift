import Compute
import Testing

@Suite("CUDA_VISIBLE_DEVICES")
struct CUDAVisibleDevicesTests {
    static let devices = [
        Device(kind: .cuda, ordinal: 0, uuid: "GPU-d6a04513-23cb-b6a9-fd68-5923daa696ea", capacity: 80 << 30),
        Device(kind: .cuda, ordinal: 1, uuid: "GPU-d6a1ffff-0000-1111-2222-333344445555", capacity: 80 << 30),
        Device(kind: .cuda, ordinal: 2, uuid: "GPU-7f00aa11-9c3b-4e2d-8a1f-000000000002", capacity: 80 << 30),
    ]

    func resolve(_ value: String?) -> [Int] {
        CUDA.resolveVisibleDevices(value, among: Self.devices).map(\.ordinal)
    }

    @Test("Unset shows every device; empty hides them all")
    func unsetAndEmpty() {
        #expect(resolve(nil) == [0, 1, 2])
        #expect(resolve("") == [])
    }

    @Test("Ordinals, in the given order")
    func ordinals() {
        #expect(resolve("2,0") == [2, 0])
        #expect(resolve(" 1 , 2 ") == [1, 2])
    }

    @Test("Full UUIDs and unique prefixes, with or without GPU-, any case")
    func uuids() {
        #expect(resolve("GPU-7f00aa11-9c3b-4e2d-8a1f-000000000002,0") == [2, 0])
        #expect(resolve("GPU-d6a04") == [0])
        #expect(resolve("d6a1") == [1])
        #expect(resolve("GPU-7F00") == [2])
    }

    @Test("The list ends at an entry naming no device, an ambiguous prefix, or a repeat, as in the driver")
    func stops() {
        #expect(resolve("0,7,1") == [0])
        #expect(resolve("1,GPU-d6a,2") == [1])
        #expect(resolve("1,1,2") == [1])
        #expect(resolve("GPU-") == [])
        #expect(resolve("-1") == [])
    }

    @Test("UUIDs print as nvidia-smi does")
    func format() {
        let bytes: [UInt8] = [0xd6, 0xa0, 0x45, 0x13, 0x23, 0xcb, 0xb6, 0xa9, 0xfd, 0x68, 0x59, 0x23, 0xda, 0xa6, 0x96, 0xea]
        #expect(Device.formatUUID(prefix: "GPU", bytes: bytes) == "GPU-d6a04513-23cb-b6a9-fd68-5923daa696ea")
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Compute

/// N virtual CPU devices carved out of host memory: real processes, real shared memory.
///
/// Each has a stable UUID (the same on every run on this machine): a hash of the machine id (or the
/// host name) and the ordinal, printed like nvidia-smi prints a GPU's (`CPU-xxxxxxxx-xxxx-…`).
public struct VirtualCPUDevices: DeviceProvider, CustomStringConvertible {
    public var count: Int
    /// Bytes per device; nil: physical memory split evenly.
    public var capacity: Int?

    public init(count: Int, capacity: Int? = nil) {
        self.count = count
        self.capacity = capacity
    }

    public var description: String { "cpu:\(count)" }

    /// The most virtual devices one node offers: far beyond any real node's GPUs, and small enough that
    /// planning over them and their per-device bookkeeping stays instant.
    public static let maximumCount = 4096

    public func devices() throws -> [Device] {
        guard count >= 1 else { throw ClusterError("a node needs at least 1 virtual CPU device, got \(count)") }
        guard count <= Self.maximumCount else {
            throw ClusterError("\(count) virtual CPU devices is more than the maximum of \(Self.maximumCount)")
        }
        let physical = VirtualCPUDevices.physicalMemory
        let each: Int
        if let capacity {
            guard capacity >= 1 << 20 else {
                throw ClusterError("device capacity \(ByteCount.format(capacity)) is below the minimum of 1 MiB")
            }
            // The capacity is backed by real memory, so the devices together cannot offer more than there is.
            guard capacity.multipliedReportingOverflow(by: count).partialValue <= physical,
                  !capacity.multipliedReportingOverflow(by: count).overflow else {
                throw ClusterError("\(count) devices of \(ByteCount.format(capacity)) exceed this machine's \(ByteCount.format(physical)) of memory")
            }
            each = capacity
        } else {
            each = physical / count / (1 << 20) * (1 << 20)
        }
        let seed = VirtualCPUDevices.machineIdentity
        return (0..<count).map { ordinal in
            Device(kind: .cpu, ordinal: ordinal, uuid: VirtualCPUDevices.uuid(machine: seed, ordinal: ordinal), capacity: each)
        }
    }

    /// The UUID of virtual device `ordinal` on the machine identified by `machine`.
    public static func uuid(machine: String, ordinal: Int) -> String {
        let input = Array("colocate-virtual-cpu-device/\(machine)/\(ordinal)".utf8)
        let halves = [stableHash(input, seed: 0x9e37_79b9_7f4a_7c15), stableHash(input, seed: 0xc2b2_ae3d_27d4_eb4f)]
        let bytes = halves.flatMap { h in (0..<8).map { i in UInt8(truncatingIfNeeded: h >> UInt64(8 * (7 - i))) } }
        return Device.formatUUID(prefix: "CPU", bytes: bytes)
    }

    /// /etc/machine-id when present, else the host name.
    static var machineIdentity: String {
        if let f = fopen("/etc/machine-id", "r") {
            defer { fclose(f) }
            var buffer = [CChar](repeating: 0, count: 128)
            if fgets(&buffer, Int32(buffer.count), f) != nil {
                let id = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    .trimmingWhitespace()
                if !id.isEmpty { return id }
            }
        }
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        return "host:" + String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Total physical memory in bytes.
    public static var physicalMemory: Int {
        Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// FNV-1a 64 over `seed` and the bytes, then the SplitMix64 finalizer so that every input bit
    /// moves every output bit. Stable across runs and platforms (unlike `Hasher`).
    static func stableHash(_ bytes: [UInt8], seed: UInt64) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        h ^= h >> 30
        h = h &* 0xbf58_476d_1ce4_e5b9
        h ^= h >> 27
        h = h &* 0x94d0_49bb_1331_11eb
        h ^= h >> 31
        return h
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        return String(drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}

import CCUDA
import Synchronization

/// The CUDA driver of this process: device enumeration and the per-device handles.
///
/// Nothing is linked: ``load()`` opens `libcuda.so.1` (or `COLOCATE_LIBCUDA`) and runs `cuInit`. On a
/// machine without CUDA it throws "CUDA is not available: <why>" and nothing else is affected.
public final class CUDA: Sendable {
    let driver: CUDADriver
    /// The driver's CUDA version, e.g. 13000 for 13.0.
    public let driverVersion: Int
    private let openDevices = Mutex<[Int: CUDADevice]>([:])

    private init(driver: CUDADriver) {
        self.driver = driver
        driverVersion = Int(driver.version)
    }

    private static let shared: Result<CUDA, CUDAError> = Result { () throws(CUDAError) -> CUDA in
        CUDA(driver: try CUDADriver.load())
    }

    /// Loads the driver (once per process).
    public static func load() throws(CUDAError) -> CUDA { try shared.get() }

    /// Whether the driver loads and sees at least one device.
    public static var isAvailable: Bool {
        guard let cuda = try? load(), let count = try? cuda.deviceCount() else { return false }
        return count > 0
    }

    /// Why CUDA cannot be used here, or nil when it can.
    public static var unavailableReason: String? {
        do {
            let count = try load().deviceCount()
            return count > 0 ? nil : "CUDA is not available: the driver sees no device"
        } catch {
            return error.description
        }
    }

    /// Devices visible to this process (after `CUDA_VISIBLE_DEVICES`, which the driver applies).
    public func deviceCount() throws(CUDAError) -> Int {
        var count: Int32 = 0
        try CUDAError.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        return Int(count)
    }

    /// The visible devices as the cluster sees them: ordinal, UUID (`GPU-…`, as nvidia-smi prints it)
    /// and total memory.
    public func devices() throws(CUDAError) -> [Device] {
        try (0..<deviceCount()).map { (ordinal) throws(CUDAError) in try properties(ordinal).device }
    }

    /// Name, UUID, memory and compute capability of device `ordinal`, without creating a context.
    public func properties(_ ordinal: Int) throws(CUDAError) -> CUDADeviceProperties {
        var handle: CUdevice = 0
        try CUDAError.check(driver.cuDeviceGet(&handle, Int32(ordinal)), "cuDeviceGet")
        var nameBuffer = [CChar](repeating: 0, count: 256)
        try CUDAError.check(driver.cuDeviceGetName(&nameBuffer, Int32(nameBuffer.count), handle), "cuDeviceGetName")
        var uuid = CUuuid()
        try CUDAError.check(driver.cuDeviceGetUuid(&uuid, handle), "cuDeviceGetUuid_v2")
        var total = 0
        try CUDAError.check(driver.cuDeviceTotalMem(&total, handle), "cuDeviceTotalMem_v2")
        func attribute(_ id: Int32) throws(CUDAError) -> Int {
            var value: Int32 = 0
            try CUDAError.check(driver.cuDeviceGetAttribute(&value, id, handle), "cuDeviceGetAttribute")
            return Int(value)
        }
        let uuidBytes = withUnsafeBytes(of: uuid.bytes) { Array($0) }
        let virtualMemory = try attribute(CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED) != 0
        let fileDescriptors = try attribute(CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED) != 0
        let name = String(decoding: nameBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return CUDADeviceProperties(
            device: Device(kind: .cuda, ordinal: ordinal, uuid: Device.formatUUID(prefix: "GPU", bytes: uuidBytes), capacity: total),
            name: name,
            computeCapability: try (attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR), attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)),
            multiprocessorCount: try attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            pciAddress: "\(hex(try attribute(CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID), 4)):\(hex(try attribute(CU_DEVICE_ATTRIBUTE_PCI_BUS_ID), 2))"
                + ":\(hex(try attribute(CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID), 2))",
            supportsFileDescriptorSharing: virtualMemory && fileDescriptors)
    }

    /// The device `ordinal` with its primary context and its own thread; one per device per process.
    public func device(_ ordinal: Int) throws(CUDAError) -> CUDADevice {
        let count = try deviceCount()
        guard ordinal >= 0 && ordinal < count else {
            throw CUDAError(library: .driver, code: CUDAError.invalidDevice.code, api: "cuDeviceGet",
                            message: "no CUDA device \(ordinal): this process sees \(count)")
        }
        if let open = openDevices.withLock({ $0[ordinal] }) { return open }
        let created = try CUDADevice(cuda: self, properties: properties(ordinal))
        return openDevices.withLock { open in
            if let existing = open[ordinal] { return existing }
            open[ordinal] = created
            return created
        }
    }

    /// The visible device with this UUID (`GPU-…`, full or a unique prefix), or a clear error naming the
    /// visible ones. Processes with different `CUDA_VISIBLE_DEVICES` find the same GPU this way.
    public func device(uuid: String) throws -> CUDADevice {
        let visible = try devices()
        let matches = visible.filter { CUDAVisibleDevices.uuid($0.uuid, matches: uuid) }
        guard matches.count == 1, let match = matches.first else {
            let list = visible.map(\.uuid).joined(separator: ", ")
            throw ComputeError(matches.isEmpty
                ? "\(uuid) is not visible to this process (visible: \(list.isEmpty ? "none" : list))"
                : "\(uuid) is ambiguous among the visible devices (\(list))")
        }
        return try device(match.ordinal)
    }
}

private func hex(_ value: Int, _ digits: Int) -> String {
    let s = String(value, radix: 16)
    return String(repeating: "0", count: max(0, digits - s.count)) + s
}

/// What the driver reports about a device.
public struct CUDADeviceProperties: Sendable, Hashable {
    public var device: Device
    public var name: String
    public var computeCapability: (major: Int, minor: Int)
    public var multiprocessorCount: Int
    /// PCI domain:bus:device, as nvidia-smi's `pci.bus_id` without the function (`0000:00:06`).
    public var pciAddress: String
    /// Whether the device can map virtual-memory allocations shared as POSIX file descriptors
    /// (``CUDAMemorySharing/fileDescriptor``).
    public var supportsFileDescriptorSharing: Bool

    /// `major * 10 + minor`, as in `sm_90`.
    public var architecture: Int { computeCapability.major * 10 + computeCapability.minor }

    public static func == (a: Self, b: Self) -> Bool { a.device == b.device && a.name == b.name }
    public func hash(into hasher: inout Hasher) { hasher.combine(device) }
}

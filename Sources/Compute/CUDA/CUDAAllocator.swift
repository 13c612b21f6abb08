import Synchronization

/// Device memory under a byte budget: `memoryUtilization × total memory` of the device, as vLLM's
/// `gpu_memory_utilization`, so colocated processes share a GPU without running each other out.
/// An allocation beyond the budget fails with a message naming what was asked, used and allowed.
public final class CUDAAllocator: Sendable {
    public let device: CUDADevice
    /// Bytes this allocator may hand out in total.
    public let budget: Int
    /// The fraction of the device's memory the budget was made from, when it was.
    public let memoryUtilization: Double?
    private let used = Mutex(0)

    /// A budget of `memoryUtilization` (0 < u ≤ 1) of the device's total memory.
    public init(device: CUDADevice, memoryUtilization: Double) throws(ComputeError) {
        guard memoryUtilization > 0 && memoryUtilization <= 1 else {
            throw ComputeError("memory utilization must be in (0, 1], not \(memoryUtilization)")
        }
        self.device = device
        self.memoryUtilization = memoryUtilization
        budget = Int(memoryUtilization * Double(device.device.capacity))
    }

    /// A budget of `budgetBytes`.
    public init(device: CUDADevice, budgetBytes: Int) {
        self.device = device
        memoryUtilization = nil
        budget = budgetBytes
    }

    /// Bytes handed out and not yet released.
    public var bytesInUse: Int { used.withLock { $0 } }

    /// A new allocation of `byteCount` bytes (not zeroed), counted against the budget until released:
    /// `cuMemAlloc` by default, or shareable as a file descriptor (counted at its rounded-up size).
    public func allocate(byteCount: Int, sharing: CUDAMemorySharing = .ipc) throws(ComputeError) -> CUDABuffer {
        guard byteCount >= 0 else { throw ComputeError("cannot allocate \(byteCount) bytes") }
        let counted: Int
        do {
            counted = sharing == .fileDescriptor ? try CUDAShareableAllocation.mappedSize(of: byteCount, on: device) : byteCount
        } catch {
            throw ComputeError("cannot allocate \(formatBytes(byteCount)) on \(device.uuid) (cuda:\(device.ordinal)): \(error)")
        }
        let reserved = used.withLock { inUse -> Int? in
            guard inUse + counted <= budget else { return nil }
            inUse += counted
            return inUse
        }
        guard reserved != nil else { throw budgetError(counted) }
        do {
            return try device.allocate(byteCount: byteCount, sharing: sharing, budget: self)
        } catch {
            release(byteCount: counted)
            let free = (try? device.memoryInfo().free).map { ", \(formatBytes($0)) free on the device" } ?? ""
            throw ComputeError("cannot allocate \(formatBytes(byteCount)) on \(device.uuid) (cuda:\(device.ordinal)): \(error)\(free)")
        }
    }

    /// A zero-filled contiguous tensor (zeroed synchronously; the backend's `zeros` zeroes on its stream).
    public func tensor(_ shape: [Int], dtype: DType) throws(ComputeError) -> Tensor {
        let buffer = try allocate(byteCount: shape.reduce(1, *) * dtype.byteSize)
        do {
            try device.withContext { () throws(CUDAError) in
                try CUDAError.check(device.driver.cuMemsetD8Async(buffer.deviceAddress, 0, buffer.byteCount, nil), "cuMemsetD8Async")
                try CUDAError.check(device.driver.cuCtxSynchronize(), "cuCtxSynchronize")
            }
        } catch {
            throw ComputeError("cannot zero \(formatBytes(buffer.byteCount)) on \(device.uuid): \(error)")
        }
        return buffer.tensor(dtype: dtype, shape: shape)
    }

    func release(byteCount: Int) {
        used.withLock { $0 -= byteCount }
    }

    private func budgetError(_ requested: Int) -> ComputeError {
        let inUse = bytesInUse
        let origin = memoryUtilization.map { " (memory utilization \($0) × \(formatBytes(device.device.capacity)))" } ?? ""
        return ComputeError(.overBudget, "cannot allocate \(formatBytes(requested)) on \(device.uuid) (cuda:\(device.ordinal)): "
            + "\(formatBytes(inUse)) of the budget of \(formatBytes(budget))\(origin) in use, \(formatBytes(max(0, budget - inUse))) left")
    }
}

/// `1.50 GiB`, `12.0 MiB`, `512 B`.
func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while abs(value) >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    if unit == 0 { return "\(bytes) B" }
    let rounded = (value * 100).rounded() / 100
    return "\(rounded) \(units[unit])"
}

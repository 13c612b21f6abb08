import Compute
import Testing

/// On a machine with a GPU: devices, budgets, copies, IPC refusals and a GEMM. Skipped elsewhere;
/// `colocate cuda-check` covers every op on the GPU machine, which has no Swift toolchain.
@Suite("CUDA devices", .enabled(if: CUDA.isAvailable, "no CUDA driver on this machine"))
struct CUDADeviceTests {
    @Test("Devices have nvidia-smi UUIDs and memory")
    func devices() throws {
        for device in try CUDA.load().devices() {
            #expect(device.kind == .cuda)
            #expect(device.uuid.hasPrefix("GPU-") && device.uuid.count == 40)
            #expect(device.capacity > 0)
        }
    }

    @Test("An allocation beyond the budget is refused, naming requested, used and budget")
    func budget() throws {
        let device = try CUDA.load().device(0)
        let allocator = CUDAAllocator(device: device, budgetBytes: 1 << 20)
        let kept = try allocator.allocate(byteCount: 768 << 10)
        let error = #expect(throws: ComputeError.self) { _ = try allocator.allocate(byteCount: 512 << 10) }
        #expect(error?.message.contains("512.0 KiB") == true)
        #expect(error?.message.contains("768.0 KiB of the budget of 1.0 MiB") == true)
        #expect(kept.byteCount == 768 << 10)
    }

    @Test("Host → device → host round trip, and a linear layer against a CPU sum")
    func linear() throws {
        let device = try CUDA.load().device(0)
        let backend = try CUDABackend(device: device, memoryUtilization: 0.05)
        let x = try backend.upload(Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]))
        let w = try backend.upload(Tensor([1, 0, -1, 0.5, 0.5, 0.5], shape: [2, 3]), as: .bf16)
        let y = try backend.zeros([2, 2], dtype: .f32)
        backend.linear(x, weight: w, bias: nil, into: y)
        #expect(try backend.floats(y) == [-2, 3, -2, 7.5])
    }

    @Test("A handle is refused on another device and opens in its own process as a view")
    func ipc() throws {
        let cuda = try CUDA.load()
        let device = try cuda.device(0)
        let buffer = try device.allocate(byteCount: 1 << 20)
        let handle = try buffer.exportHandle(offset: 4096, byteCount: 8192)
        let view = try device.open(handle)
        #expect(view.deviceAddress == buffer.deviceAddress + 4096)
        var other = handle
        other.deviceUUID = "GPU-00000000-0000-0000-0000-000000000000"
        #expect(throws: ComputeError.self) { _ = try device.open(other) }
        #expect(throws: (any Error).self) { _ = try cuda.device(uuid: other.deviceUUID) }
    }
}

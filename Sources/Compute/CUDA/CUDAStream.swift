import CCUDA

/// A CUDA stream, destroyed with its owner.
public final class CUDAStream: @unchecked Sendable {
    public let device: CUDADevice
    package let handle: CUstream

    init(device: CUDADevice) throws(CUDAError) {
        self.device = device
        handle = try device.withContext { () throws(CUDAError) -> CUstream in
            var stream: CUstream?
            try CUDAError.check(device.driver.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate")
            return stream!
        }
    }

    deinit {
        let (driver, handle) = (device.driver, handle)
        device.withContext { _ = driver.cuStreamDestroy(handle) }
    }

    /// Waits until all work queued on the stream is done.
    public func synchronize() throws(CUDAError) {
        try device.withContext { () throws(CUDAError) in try CUDAError.check(device.driver.cuStreamSynchronize(handle), "cuStreamSynchronize") }
    }

    /// Makes later work on this stream wait for `event`.
    public func wait(for event: CUDAEvent) throws(CUDAError) {
        try device.withContext { () throws(CUDAError) in try CUDAError.check(device.driver.cuStreamWaitEvent(handle, event.handle, 0), "cuStreamWaitEvent") }
    }

    /// Queues an asynchronous device-to-device copy.
    public func copy(from source: UInt64, to destination: UInt64, byteCount: Int) throws(CUDAError) {
        try device.withContext { () throws(CUDAError) in try CUDAError.check(device.driver.cuMemcpyDtoDAsync(destination, source, byteCount, handle), "cuMemcpyDtoDAsync_v2") }
    }
}

/// A CUDA event, destroyed with its owner.
public final class CUDAEvent: @unchecked Sendable {
    public let device: CUDADevice
    let handle: CUevent

    init(device: CUDADevice, timing: Bool) throws(CUDAError) {
        self.device = device
        handle = try device.withContext { () throws(CUDAError) -> CUevent in
            var event: CUevent?
            try CUDAError.check(device.driver.cuEventCreate(&event, timing ? CU_EVENT_DEFAULT : CU_EVENT_DISABLE_TIMING), "cuEventCreate")
            return event!
        }
    }

    deinit {
        let (driver, handle) = (device.driver, handle)
        device.withContext { _ = driver.cuEventDestroy(handle) }
    }

    /// Records the event after the work queued so far on `stream`.
    public func record(on stream: CUDAStream) throws(CUDAError) {
        try device.withContext { () throws(CUDAError) in try CUDAError.check(device.driver.cuEventRecord(handle, stream.handle), "cuEventRecord") }
    }

    /// Waits for the recorded work to finish.
    public func synchronize() throws(CUDAError) {
        try device.withContext { () throws(CUDAError) in try CUDAError.check(device.driver.cuEventSynchronize(handle), "cuEventSynchronize") }
    }

    /// Seconds between `start`'s record and this event's (both recorded and complete).
    public func seconds(since start: CUDAEvent) throws(CUDAError) -> Double {
        var ms: Float = 0
        try CUDAError.check(device.driver.cuEventElapsedTime(&ms, start.handle, handle), "cuEventElapsedTime")
        return Double(ms) / 1000
    }
}

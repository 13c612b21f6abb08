import Compute
import Foundation

/// What the parent of an IPC check sends its child on stdin.
struct CUDAIPCRequest: Codable {
    var handle: MemoryHandle
    /// The same handle with an owner that has exited: must be refused.
    var deadOwner: MemoryHandle
    /// The same handle naming a GPU no process sees: must be refused.
    var invisibleDevice: MemoryHandle
    /// For file-descriptor sharing, the same handle with a wrong secret: must be refused.
    var forgedSecret: MemoryHandle?
    /// Word the child writes at the start of the shared memory, for the parent to see.
    var marker: UInt32
}

/// The parent side, for each way of sharing the GPU supports (CUDA IPC of a `cuMemAlloc` allocation, the
/// file descriptor of a `cuMemCreate` one): exports a filled buffer, runs `colocate cuda-check
/// --ipc-child` with the handle as JSON on its stdin (once as is and, with two GPUs, once with
/// `CUDA_VISIBLE_DEVICES` naming the other GPU first, so that the two processes number the GPU
/// differently), and checks what the child wrote.
struct CUDAIPCCheck {
    let backend: CUDABackend
    let bytes: Int

    func run() throws -> CUDACheckReport {
        var report = CUDACheckReport()
        for sharing in CUDAMemorySharing.allCases {
            guard sharing == .ipc || backend.cudaDevice.properties.supportsFileDescriptorSharing else {
                print("\n== sharing by file descriptor: not supported by this GPU or driver, skipped")
                continue
            }
            report.merge(try run(sharing))
        }
        return report
    }

    private func run(_ sharing: CUDAMemorySharing) throws -> CUDACheckReport {
        print("\n== CUDA memory shared with a child process by \(sharing == .ipc ? "CUDA IPC" : "file descriptor") (\(bytes >> 20) MiB)")
        var report = CUDACheckReport()
        let device = backend.cudaDevice
        let buffer = try backend.allocator.allocate(byteCount: bytes, sharing: sharing)
        let words = bytes / 4
        let pattern = [UInt32](unsafeUninitializedCapacity: words) { out, n in
            for i in 0..<words { out[i] = UInt32(truncatingIfNeeded: i) &* 2_654_435_761 }
            n = words
        }
        try pattern.withUnsafeBytes { try buffer.copy(fromHost: $0.baseAddress!, byteCount: bytes) }

        let clock = ContinuousClock()
        let start = clock.now
        let handle = try buffer.exportHandle()
        print("  exported in \(microseconds(clock.now - start)) µs: \(handle)")

        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run()
        dead.waitUntilExit()
        var deadOwner = handle
        deadOwner.ownerPID = dead.processIdentifier
        var invisible = handle
        invisible.deviceUUID = "GPU-00000000-0000-0000-0000-000000000000"
        var forged: MemoryHandle?
        if handle.kind == .cudaFileDescriptor {
            forged = handle
            forged!.opaque[DescriptorReference.byteCount - 1] ^= 0xFF  // the secret's last byte
        }

        var variants: [(String, String?)] = [("same CUDA_VISIBLE_DEVICES", nil)]
        let all = try device.cuda.devices()
        if let other = all.first(where: { $0.uuid != device.uuid }) {
            variants.append(("CUDA_VISIBLE_DEVICES=\(other.uuid.prefix(12))…,\(device.uuid.prefix(12))…", "\(other.uuid),\(device.uuid)"))
        }
        for (index, (label, visible)) in variants.enumerated() {
            let marker = 0xC0FF_EE00 + UInt32(index)
            let request = CUDAIPCRequest(handle: handle, deadOwner: deadOwner, invisibleDevice: invisible, forgedSecret: forged, marker: marker)
            print("  child (\(label)):")
            let status = try runChild(request, visibleDevices: visible)
            var first: UInt32 = 0
            try buffer.copy(toHost: &first, byteCount: 4)
            let sawMarker = first == marker
            print("  parent: child exited \(status); its write is \(sawMarker ? "visible" : "NOT visible") in the parent's buffer")
            if status == 0 && sawMarker { report.pass("\(sharing.rawValue) sharing, \(label)") } else { report.fail("\(sharing.rawValue) sharing, \(label)") }
            try withUnsafeBytes(of: pattern[0]) { try buffer.copy(fromHost: $0.baseAddress!, byteCount: 4) }
        }
        return report
    }

    private func runChild(_ request: CUDAIPCRequest, visibleDevices: String?) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executablePath())
        process.arguments = ["cuda-check", "--ipc-child"]
        var environment = ProcessInfo.processInfo.environment
        if let visibleDevices { environment["CUDA_VISIBLE_DEVICES"] = visibleDevices }
        process.environment = environment
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(try JSONEncoder().encode(request))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") { print("    \(line)") }
        return process.terminationStatus
    }

    private func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }
}

func microseconds(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    return String(format: "%.0f", Double(seconds) * 1e6 + Double(attoseconds) / 1e12)
}

/// The child side: finds the GPU by the handle's UUID, opens the handle (twice: the second is the
/// cached mapping), copies the memory into its own buffer, checks the pattern, writes a marker into
/// the shared memory, closes, and checks that the bad handles are refused. Exits non-zero on a failure.
enum CUDAIPCCheckChild {
    static func run() throws {
        let request = try JSONDecoder().decode(CUDAIPCRequest.self, from: FileHandle.standardInput.readDataToEndOfFile())
        let handle = request.handle
        let cuda = try CUDA.load()
        let clock = ContinuousClock()
        var failures = 0

        let device = try cuda.device(uuid: handle.deviceUUID)
        print("pid \(getpid()): \(handle.deviceUUID.prefix(12))… is my cuda:\(device.ordinal) (CUDA_VISIBLE_DEVICES=\(ProcessInfo.processInfo.environment["CUDA_VISIBLE_DEVICES"] ?? "unset"))")

        var start = clock.now
        var mapped: CUDABuffer? = try device.open(handle)
        let openTime = clock.now - start
        start = clock.now
        var again: CUDABuffer? = try device.open(handle)
        let cachedTime = clock.now - start
        let shared = mapped!.deviceAddress == again!.deviceAddress && device.openIPCMappingCount == 1
        print("open \(microseconds(openTime)) µs; second open \(microseconds(cachedTime)) µs, \(shared ? "same mapping" : "A SECOND MAPPING")")
        if !shared { failures += 1 }

        let local = try device.allocate(byteCount: handle.byteCount)
        let stream = try device.makeStream()
        let (begin, end) = (try device.makeEvent(), try device.makeEvent())
        try stream.copy(from: mapped!.deviceAddress, to: local.deviceAddress, byteCount: handle.byteCount)  // warm-up
        try begin.record(on: stream)
        try stream.copy(from: mapped!.deviceAddress, to: local.deviceAddress, byteCount: handle.byteCount)
        try end.record(on: stream)
        try end.synchronize()
        let seconds = try end.seconds(since: begin)
        print("copy of \(handle.byteCount >> 20) MiB from the mapping: \(String(format: "%.3f", seconds * 1e3)) ms, \(String(format: "%.0f", Double(handle.byteCount) / seconds / 1e9)) GB/s")

        let words = handle.byteCount / 4
        var host = [UInt32](repeating: 0, count: words)
        try host.withUnsafeMutableBytes { try local.copy(toHost: $0.baseAddress!, byteCount: words * 4) }
        var wrong = 0
        for i in 0..<words where host[i] != UInt32(truncatingIfNeeded: i) &* 2_654_435_761 { wrong += 1 }
        print("pattern: \(wrong == 0 ? "all \(words) words correct" : "\(wrong) WRONG words")")
        if wrong != 0 { failures += 1 }

        var marker = request.marker
        try mapped!.copy(fromHost: &marker, byteCount: 4)

        start = clock.now
        mapped = nil
        again = nil
        let closeTime = clock.now - start
        let closed = device.openIPCMappingCount == 0
        print("close (last user released) \(microseconds(closeTime)) µs, \(closed ? "mapping closed" : "MAPPING STILL OPEN")")
        if !closed { failures += 1 }

        failures += expectRefusal("handle of an exited process") { _ = try device.open(request.deadOwner) }
        if let forged = request.forgedSecret {
            failures += expectRefusal("handle with a forged secret") { _ = try device.open(forged) }
        }
        failures += expectRefusal("handle of a GPU this process does not see") { _ = try cuda.device(uuid: request.invisibleDevice.deviceUUID) }
        if let other = try cuda.devices().first(where: { $0.uuid != device.uuid }) {
            let otherDevice = try cuda.device(other.ordinal)
            failures += expectRefusal("handle opened on another GPU") { _ = try otherDevice.open(handle) }
        }
        if failures > 0 { exit(1) }
    }

    static func expectRefusal(_ what: String, _ body: () throws -> Void) -> Int {
        do {
            try body()
            print("\(what): ACCEPTED")
            return 1
        } catch {
            print("\(what): refused: \(error)")
            return 0
        }
    }
}

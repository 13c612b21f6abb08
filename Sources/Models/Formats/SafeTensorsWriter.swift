import Compute

/// Writes safetensors files the way Hugging Face's writer does: the JSON header padded with spaces so
/// that the data section starts on an 8-byte boundary, tensors packed back to back in the given order.
/// The file is replaced atomically (temporary file, then rename).
public enum SafeTensorsWriter {
    /// Writes `tensors` (host, contiguous; names unique and not `__metadata__`) to `path`.
    /// An empty `metadata` writes no `__metadata__` entry.
    public static func write(
        _ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String
    ) throws(SafeTensorsError) {
        let header = try headerBytes(tensors, metadata: metadata, path: path)
        do {
            try FileIO.writeAtomically(path) { (w: inout AtomicFileWriter) throws(FileIOError) in
                var length = UInt64(header.count).littleEndian
                try withUnsafeBytes(of: &length) { (b: UnsafeRawBufferPointer) throws(FileIOError) in try w.write(b) }
                try withBytes(of: header) { (b: UnsafeRawBufferPointer) throws(FileIOError) in try w.write(b) }
                for (_, t) in tensors {
                    try w.write(UnsafeRawBufferPointer(start: t.rawPointer, count: t.byteCount))
                }
            }
        } catch {
            throw SafeTensorsError(.writeFailed, path: path, error.message)
        }
    }

    /// Throws unless `write(_:metadata:to:)` may create or replace `path`: nothing there, or a regular
    /// file (never a symbolic link, device or FIFO). Lets a command refuse its output before working.
    public static func checkDestination(_ path: String) throws(SafeTensorsError) {
        do {
            try FileIO.checkReplaceable(path)
        } catch {
            throw SafeTensorsError(.writeFailed, path: path, error.message)
        }
    }

    /// The padded JSON header for `tensors`, validating that each can be written.
    static func headerBytes(
        _ tensors: [(name: String, tensor: Tensor)], metadata: [String: String], path: String
    ) throws(SafeTensorsError) -> [UInt8] {
        var members: [(key: String, value: JSONValue)] = []
        if !metadata.isEmpty {
            let sorted = metadata.sorted { $0.key < $1.key }
            members.append(("__metadata__", .object(sorted.map { ($0.key, JSONValue.string($0.value)) })))
        }
        var names = Set<String>()
        var offset = 0
        for (name, t) in tensors {
            guard name != "__metadata__" else {
                throw SafeTensorsError(.unwritableTensor, path: path, tensor: name, "the name __metadata__ is reserved")
            }
            guard names.insert(name).inserted else {
                throw SafeTensorsError(.unwritableTensor, path: path, tensor: name, "name appears twice")
            }
            guard t.memory != nil else {
                throw SafeTensorsError(.unwritableTensor, path: path, tensor: name, "tensor is on \(t.device.kind), not in host memory")
            }
            guard t.isContiguous else {
                throw SafeTensorsError(.unwritableTensor, path: path, tensor: name, "tensor is not contiguous")
            }
            let end = offset + t.byteCount
            members.append((name, .object([
                ("dtype", .string(t.dtype.rawValue)),
                ("shape", .array(t.shape.map { .int($0) })),
                ("data_offsets", .array([.int(offset), .int(end)])),
            ])))
            offset = end
        }
        var bytes = Array(JSONValue.object(members).serialized().utf8)
        while (8 + bytes.count) % 8 != 0 { bytes.append(0x20) }
        return bytes
    }
}

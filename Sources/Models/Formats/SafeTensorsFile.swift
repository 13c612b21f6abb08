#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Compute

/// A safetensors file, memory-mapped and fully validated.
///
/// The whole file is mapped once, privately and writable: tensor views are copy-on-write, so code that
/// writes into a loaded weight gets its own pages and never modifies the file. `tensor(_:)` returns
/// views into the mapping without copying; the mapping lives until the last view (and this object)
/// is gone. As with any mapping, truncating the file while it is mapped makes access fault; files are
/// replaced atomically by `SafeTensorsWriter`, which never truncates in place.
public final class SafeTensorsFile: @unchecked Sendable {
    // Immutable after init; the mapping is only read through views.

    public let path: String
    /// Size of the file in bytes.
    public let fileSize: Int
    /// Tensor names in the order of their data in the file.
    public let tensorNames: [String]
    /// The `__metadata__` of the header (empty when absent).
    public let metadata: [String: String]
    /// File offset where the data section starts (8 + header length).
    public let dataStart: Int
    /// The mapping of the whole file; tensors view it.
    public let memory: HostMemory
    private let infos: [String: SafeTensorInfo]

    /// Maps and validates `path`. Nothing is returned unless every tensor entry is valid.
    public init(path: String) throws(SafeTensorsError) {
        self.path = path
        let fd: Int32, size: Int
        do {
            (fd, size) = try FileIO.openRegularFile(path)  // a FIFO is refused, not waited on
        } catch {
            throw SafeTensorsError(.cannotOpen, path: path, error.message)
        }
        defer { close(fd) }  // the mapping stays valid after the descriptor is closed
        guard size >= 8 else {
            throw SafeTensorsError(.fileTooSmall, path: path, "file of \(size) bytes is too small for a safetensors header (8 bytes at least)")
        }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw SafeTensorsError(.cannotOpen, path: path, "cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        // Owning the mapping from here on means every early throw below unmaps it.
        let memory = HostMemory(baseAddress: base, byteCount: size, device: .host) { p, n in munmap(p, n) }
        let header = try SafeTensorsHeader(file: UnsafeRawBufferPointer(start: base, count: size), path: path)
        self.memory = memory
        self.fileSize = size
        self.dataStart = header.dataStart
        self.metadata = header.metadata
        self.tensorNames = header.tensors.map(\.name)
        self.infos = Dictionary(header.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }


    /// Where tensor `name` lies, or nil when the file has no such tensor.
    public func info(_ name: String) -> SafeTensorInfo? { infos[name] }

    /// All tensors, in data order.
    public var allInfo: [SafeTensorInfo] { tensorNames.map { infos[$0]! } }

    /// Tensor `name` as a view of the mapping.
    ///
    /// Zero copy when the data is aligned to its element size. safetensors aligns only the start of the
    /// data section to 8 bytes when writers pad the header (Hugging Face's do, others need not), so a
    /// misaligned tensor is returned as an aligned private copy instead of a view.
    public func tensor(_ name: String) throws(SafeTensorsError) -> Tensor {
        guard let info = infos[name] else {
            throw SafeTensorsError(.tensorNotFound, path: path, tensor: name, "no such tensor in the file")
        }
        let offset = info.byteRange.lowerBound
        if Int(bitPattern: memory.baseAddress + offset) % info.dtype.byteSize == 0 {
            return Tensor(memory: memory, byteOffset: offset, dtype: info.dtype, shape: info.shape)
        }
        let copy: Tensor
        do {
            copy = try Tensor.zeros(info.shape, dtype: info.dtype)
        } catch {
            throw SafeTensorsError(.cannotOpen, path: path, tensor: name, "\(error)")
        }
        copy.rawPointer.copyMemory(from: memory.baseAddress + offset, byteCount: info.byteRange.count)
        return copy
    }
}

import Compute

/// A trainer's weights as one flat buffer that engines on the same device can open: every parameter
/// is a view into it, and exporting is handing out one memory handle plus the layout.
///
/// Two kinds: ``SharedWeightBuffer`` (shared memory of a virtual CPU device) and
/// ``CUDAWeightBuffer`` (one `cuMemAlloc` allocation, exported as a CUDA IPC handle).
public protocol ExportableWeightBuffer: AnyObject, Sendable {
    /// Where each parameter sits in the buffer.
    var layout: WeightLayout { get }
    /// The device holding the buffer; only engine ranks on this device can open its export.
    var device: Device { get }
    /// Bumped by the owner whenever it changes the weights.
    var version: UInt64 { get set }
    /// The parameter `name` as a tensor viewing the buffer.
    func tensor(_ name: String) -> Tensor?
    /// Every parameter, by name, as views of the buffer.
    var tensors: [String: Tensor] { get }
    /// The handle and layout engines need to read these weights.
    func export() throws -> ExportedWeights
    /// The small per-sync message for engines that already know this layout (see ``WeightSyncNotice``).
    func exportNotice() throws -> WeightSyncNotice
    /// Sets every byte of the buffer to zero (every float dtype's 0). Does not change `version`.
    func zero() throws
}

extension ExportableWeightBuffer {
    public func exportNotice() throws -> WeightSyncNotice { try export().notice }
}

/// What a trainer sends on a sync once the engine has the layout: the handle, the version and the
/// layout's fingerprint, a few hundred bytes instead of the whole layout. Decoding a full
/// ``ExportedWeights`` of a model with hundreds of tensors costs about a millisecond, several times
/// the copy itself for a small model; an engine keeps the layouts it has seen
/// (``WeightLayoutCache``) and turns a notice back into the full export.
public struct WeightSyncNotice: Sendable, Codable, Equatable {
    public var handle: MemoryHandle
    public var version: UInt64
    /// ``WeightLayout/fingerprint`` of the layout the buffer is read by.
    public var layoutFingerprint: UInt64

    public init(handle: MemoryHandle, version: UInt64, layoutFingerprint: UInt64) {
        self.handle = handle
        self.version = version
        self.layoutFingerprint = layoutFingerprint
    }
}

extension ExportedWeights {
    /// This export as a notice (computes the layout's fingerprint).
    public var notice: WeightSyncNotice {
        WeightSyncNotice(handle: handle, version: version, layoutFingerprint: layout.fingerprint)
    }
}

extension WeightLayout {
    /// A 64-bit FNV-1a digest of every entry (name, dtype, shape, offset) and the total size. The same
    /// in every process (unlike `Hasher`), so a trainer and its engines agree on it.
    public var fingerprint: UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        func mix(_ value: Int) {
            withUnsafeBytes(of: Int64(value).littleEndian) { for b in $0 { mix(b) } }
        }
        for entry in entries {
            for b in entry.name.utf8 { mix(b) }
            mix(UInt8(0))
            for b in entry.dtype.rawValue.utf8 { mix(b) }
            mix(entry.shape.count)
            for d in entry.shape { mix(d) }
            mix(entry.offset)
        }
        mix(totalBytes)
        return hash
    }
}

/// The layouts an engine rank has received, by fingerprint, to resolve ``WeightSyncNotice``s.
public struct WeightLayoutCache: Sendable {
    private var layouts: [UInt64: WeightLayout] = [:]

    public init() {}

    /// Remembers the layout of a full export.
    public mutating func remember(_ exported: ExportedWeights) {
        layouts[exported.layout.fingerprint] = exported.layout
    }

    /// The full export a notice stands for; throws when its layout has not been received.
    public func resolve(_ notice: WeightSyncNotice) throws(WeightSyncError) -> ExportedWeights {
        guard let layout = layouts[notice.layoutFingerprint] else {
            throw WeightSyncError("weight sync notice names layout \(String(notice.layoutFingerprint, radix: 16)), which this rank has not received; send the full export first")
        }
        return ExportedWeights(handle: notice.handle, layout: layout, version: notice.version)
    }
}

import CCUDA
import Compute

/// One rank of an NCCL communicator: the all-reduce between engine ranks (tensor parallelism) or
/// data-parallel trainers, one process (and one GPU) per rank.
///
/// Rank 0 makes the ``uniqueID()`` (128 bytes) and passes it to the other ranks over the control plane;
/// every rank then creates its communicator with it. Creation blocks until all ranks have joined.
public final class NCCLCommunicator: @unchecked Sendable {
    public let device: CUDADevice
    public let rank: Int
    public let rankCount: Int
    let nccl: NCCL
    let comm: ncclComm_t

    /// Bytes of an NCCL unique id.
    public static let uniqueIDByteCount = MemoryLayout<ncclUniqueId>.size

    /// A fresh id for a new communicator (`ncclGetUniqueId`), to be sent to every rank.
    public static func uniqueID() throws(CUDAError) -> [UInt8] {
        let nccl = try NCCL.load()
        var id = ncclUniqueId()
        try CUDAError.check(nccl.ncclGetUniqueId(&id), "ncclGetUniqueId", in: .nccl)
        return withUnsafeBytes(of: id.internal) { Array($0) }
    }

    /// NCCL's version, e.g. 22803 for 2.28.3.
    public static func version() throws(CUDAError) -> Int { Int(try NCCL.load().version) }

    /// Joins rank `rank` of `rankCount` on `device` (`ncclCommInitRank`); blocks until every rank has.
    public init(device: CUDADevice, uniqueID: [UInt8], rank: Int, rankCount: Int) throws {
        guard uniqueID.count == Self.uniqueIDByteCount else {
            throw ComputeError("an NCCL unique id has \(Self.uniqueIDByteCount) bytes, not \(uniqueID.count)")
        }
        guard rankCount > 0, rank >= 0, rank < rankCount else {
            throw ComputeError("rank \(rank) is not in 0..<\(rankCount)")
        }
        nccl = try NCCL.load()
        self.device = device
        self.rank = rank
        self.rankCount = rankCount
        var id = ncclUniqueId()
        withUnsafeMutableBytes(of: &id.internal) { $0.copyBytes(from: uniqueID) }
        let nccl = nccl
        comm = try device.withContext { () throws(CUDAError) -> ncclComm_t in
            var comm: ncclComm_t?
            try CUDAError.check(nccl.ncclCommInitRank(&comm, Int32(rankCount), id, Int32(rank)), "ncclCommInitRank", in: .nccl)
            return comm!
        }
    }

    deinit {
        let (nccl, comm) = (nccl, comm)
        device.withContext { _ = nccl.ncclCommDestroy(comm) }
    }

    /// In-place sum over all ranks of `count` elements at `address`, queued on `stream`.
    public func allReduceSum(address: UInt64, count: Int, dtype: DType, stream: CUDAStream) throws(CUDAError) {
        let type: Int32
        switch dtype {
        case .f32: type = ncclFloat32
        case .bf16: type = ncclBfloat16
        case .f16: type = ncclFloat16
        default: preconditionFailure("no all-reduce for \(dtype)")
        }
        let pointer = UnsafeMutableRawPointer(bitPattern: UInt(address))
        let (nccl, comm) = (nccl, comm)
        try device.withContext { () throws(CUDAError) in
            try CUDAError.check(nccl.ncclAllReduce(pointer, pointer, count, type, ncclSum, comm, stream.handle), "ncclAllReduce", in: .nccl)
        }
    }
}

extension CUDABackend {
    /// In-place sum of `tensor` over every rank of `communicator`, queued on this backend's stream.
    public func allReduce(_ tensor: Tensor, communicator: NCCLCommunicator) {
        precondition(communicator.device.uuid == device.uuid, "communicator of \(communicator.device.device) used on \(device)")
        let ta = address(tensor, "tensor")
        if tensor.count == 0 { return }
        perform("allReduce") {
            try communicator.allReduceSum(address: ta, count: tensor.count, dtype: tensor.dtype, stream: stream)
        }
    }
}

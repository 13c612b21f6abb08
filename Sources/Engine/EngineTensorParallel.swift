import Cluster
import Collectives
import Compute
import Foundation
import Models
import Synchronization

/// How an engine's ranks reach their tensor-parallel all-reduce when they join after starting
/// (`EngineWorkerConfig.joinsAllReduceLater`, on Ray): the driver's host need not be theirs, so the
/// CPU segment is made by rank 0 on its host (``MakeTensorParallelSegment``) or by the driver when it
/// shares the host, and the NCCL id by rank 0 (``MakeTensorParallelNCCLID``), whose host has NCCL.
public struct JoinTensorParallel: RemoteCall {
    public typealias Reply = Empty
    public static let name = "engine.joinTensorParallel"
    /// The shared-memory segment (CPU devices), made on the ranks' host.
    public var segment: MemoryHandle?
    public var slotFloats: Int
    /// The NCCL unique id (GPUs).
    public var ncclUniqueID: [UInt8]?
    public init(segment: MemoryHandle? = nil, slotFloats: Int, ncclUniqueID: [UInt8]? = nil) {
        self.segment = segment
        self.slotFloats = slotFloats
        self.ncclUniqueID = ncclUniqueID
    }
}

/// A shared-memory all-reduce segment made and kept by this rank (rank 0), for its engine's ranks.
public struct MakeTensorParallelSegment: RemoteCall {
    public typealias Reply = MemoryHandle
    public static let name = "engine.makeTensorParallelSegment"
    public var worldSize: Int
    public var slotFloats: Int
    public init(worldSize: Int, slotFloats: Int) {
        self.worldSize = worldSize
        self.slotFloats = slotFloats
    }
}

/// A new NCCL unique id, made by this rank (rank 0 of an engine on GPUs).
public struct MakeTensorParallelNCCLID: RemoteCall {
    public typealias Reply = [UInt8]
    public static let name = "engine.makeTensorParallelNCCLID"
    public init() {}
}

/// A rank's tensor-parallel all-reduce: set at start, or by ``JoinTensorParallel``. The model calls
/// through it, so a rank that has not joined fails its step with a clear error instead of waiting.
final class TensorParallelLink: @unchecked Sendable {
    private struct Joined {
        var allReduce: AllReduce?
        var communicator: NCCLCommunicator?
        var shared: SharedMemoryAllReduce?
        var segmentOwner: Int32?
        /// The segment this rank made for its peers (rank 0, ``MakeTensorParallelSegment``).
        var ownedSegment: HostMemory?
    }
    private let joined = Mutex(Joined())
    let rankName: String

    init(rankName: String) { self.rankName = rankName }

    func set(allReduce: @escaping AllReduce, communicator: NCCLCommunicator? = nil, shared: SharedMemoryAllReduce? = nil,
             segmentOwner: Int32? = nil) {
        joined.withLock {
            $0.allReduce = allReduce
            $0.communicator = communicator
            $0.shared = shared
            $0.segmentOwner = segmentOwner
        }
    }

    /// The pid of the process that made the segment this rank joined (CPU devices).
    var segmentOwner: Int32? { joined.withLock { $0.segmentOwner } }

    func own(_ segment: HostMemory) { joined.withLock { $0.ownedSegment = segment } }

    var isJoined: Bool { joined.withLock { $0.allReduce != nil } }

    /// The CPU all-reduce, to abort peers when this rank's step fails.
    var shared: SharedMemoryAllReduce? { joined.withLock { $0.shared } }

    /// Joins the group: NCCL with `ncclUniqueID` on a GPU (blocks until every rank joins), the shared
    /// segment on CPU devices.
    func connect(backend: any ComputeBackend, rank: Int, worldSize: Int, segment handle: MemoryHandle?, slotFloats: Int,
                 ncclUniqueID: [UInt8]?) throws {
        if let cuda = backend as? CUDABackend {
            guard let id = ncclUniqueID else { throw EngineError("\(rankName): tensor parallelism on GPUs needs an NCCL id") }
            let comm = try NCCLCommunicator(device: cuda.cudaDevice, uniqueID: id, rank: rank, rankCount: worldSize)
            set(allReduce: { cuda.allReduce($0, communicator: comm) }, communicator: comm)
        } else {
            guard let handle else { throw EngineError("\(rankName): tensor parallelism needs an all-reduce segment") }
            guard slotFloats >= 1, handle.byteCount >= SharedMemoryAllReduce.segmentBytes(worldSize: worldSize, slotFloats: slotFloats) else {
                throw EngineError("\(rankName): an all-reduce segment of \(handle.byteCount) bytes cannot hold \(worldSize) slots of \(slotFloats) floats")
            }
            let segment = try HostMemory.map(owning: try SharedMemoryIdentity(bytes: handle.opaque).open(),
                                             byteCount: handle.byteCount, device: .host)
            let comm = SharedMemoryAllReduce(segment: segment, rank: rank, worldSize: worldSize, slotFloats: slotFloats)
            set(allReduce: { try comm($0) }, shared: comm, segmentOwner: handle.ownerPID)
        }
    }

    func callAsFunction(_ t: Tensor) throws {
        guard let allReduce = joined.withLock({ $0.allReduce }) else {
            throw EngineError("\(rankName) has not joined its tensor-parallel group (JoinTensorParallel)")
        }
        try allReduce(t)
    }
}

extension EngineWorkerState {
    /// Joins the all-reduce of this rank's engine (``JoinTensorParallel``; the driver sends the joins
    /// concurrently, as NCCL's init waits for every rank).
    func join(_ call: JoinTensorParallel) throws -> Empty {
        guard worldSize > 1 else { return Empty() }
        guard !tensorParallel.isJoined else { throw EngineError("engine rank \(rank) has already joined its tensor-parallel group") }
        try tensorParallel.connect(backend: backend, rank: rank, worldSize: worldSize, segment: call.segment,
                                   slotFloats: call.slotFloats, ncclUniqueID: call.ncclUniqueID)
        return Empty()
    }

    /// Makes and keeps the segment of this rank's engine (``MakeTensorParallelSegment``).
    func makeSegment(_ call: MakeTensorParallelSegment) throws -> MemoryHandle {
        guard call.worldSize >= 2, call.worldSize <= SharedMemoryAllReduce.maxRanks, call.slotFloats >= 1 else {
            throw EngineError("an all-reduce segment needs 2...\(SharedMemoryAllReduce.maxRanks) ranks and a slot; got \(call.worldSize) ranks, \(call.slotFloats) floats")
        }
        let segment = try SharedMemoryAllReduce.createSegment(worldSize: call.worldSize, slotFloats: call.slotFloats)
        tensorParallel.own(segment)
        return try SharedMemoryAllReduce.handle(of: segment)
    }
}

import Foundation
import Synchronization

/// Data-parallel all-reduce (sum of f32) between the ranks of an actor group over the control plane:
/// across hosts on CPU virtual devices, where there is no NCCL. Correct and simple, a test mode:
/// every rank sends its values to rank 0 (raw little-endian f32 in one frame), rank 0 adds them **in
/// rank order** — every rank gets bitwise the same result, whatever the arrival order — and answers
/// each rank with the sum. Within a host the frames go over Unix sockets, between hosts over TCP
/// authenticated by the cluster secret.
///
///     let allReduce = ControlPlaneAllReduce(context: context)   // in each rank's actor
///     gradients = try await allReduce.sum(gradients)
///
/// Every rank must call `sum` the same number of times, in the same order, with the same count.
public final class ControlPlaneAllReduce: Sendable {
    /// The call name of a contribution (handled by the worker runtime on rank 0).
    static let callName = "colocate.allReduce"

    private let context: WorkerContext
    private let name: String
    private let step = Mutex<UInt64>(0)

    /// `name` tells apart several all-reduces of one group (default: the group's name).
    public init(context: WorkerContext, name: String? = nil) {
        self.context = context
        self.name = name ?? context.groupName ?? context.actorName
    }

    /// The element-wise sum of `values` over every rank of the group.
    public func sum(_ values: [Float], timeout: Duration = ActorRef.defaultCallTimeout) async throws -> [Float] {
        let step = self.step.withLock { s in
            s += 1
            return s
        }
        if context.worldSize == 1 { return values }
        let key = "\(name)/\(step)"
        if context.rank == 0 {
            return try await AllReduceHub.shared.contribute(key: key, rank: 0, worldSize: context.worldSize, values: values, reply: nil)
        }
        var payload = [UInt8]()
        payload.reserveCapacity(8 + key.utf8.count + values.count * 4)
        payload.append(contentsOf: withUnsafeBytes(of: UInt32(context.rank).littleEndian, Array.init))
        payload.append(contentsOf: withUnsafeBytes(of: UInt32(context.worldSize).littleEndian, Array.init))
        payload.append(contentsOf: withUnsafeBytes(of: UInt32(key.utf8.count).littleEndian, Array.init))
        payload.append(contentsOf: key.utf8)
        values.withUnsafeBytes { payload.append(contentsOf: $0) }
        let root = try context.peer(rank: 0)
        let frame = try await root.connection.call(name: ControlPlaneAllReduce.callName, payload: payload, timeout: timeout)
        return AllReduceHub.floats(frame.payload[...])
    }
}

/// Rank 0's side: contributions gathered per key until every rank's is in, then summed in rank order.
final class AllReduceHub: Sendable {
    static let shared = AllReduceHub()

    private struct Round {
        var worldSize: Int
        var contributions: [Int: [Float]] = [:]
        var replies: [(requestID: UInt64, connection: Connection)] = []
        var own: Promise<[Float]>?
    }

    private let rounds = Mutex<[String: Round]>([:])

    /// A contribution from a peer's frame (on a connection's reader thread: nothing here blocks).
    func received(_ frame: Frame, on connection: Connection) {
        let p = frame.payload
        guard p.count >= 12 else { return connection.replyFailure(to: frame.requestID, error: ClusterError(.protocolViolation, "malformed all-reduce contribution")) }
        func u32(_ at: Int) -> Int { Int(UInt32(p[at]) | UInt32(p[at + 1]) << 8 | UInt32(p[at + 2]) << 16 | UInt32(p[at + 3]) << 24) }
        let (rank, worldSize, keyLength) = (u32(0), u32(4), u32(8))
        guard p.count >= 12 + keyLength, (p.count - 12 - keyLength) % 4 == 0, rank > 0, rank < worldSize,
              let key = String(validating: p[12..<(12 + keyLength)], as: UTF8.self) else {
            return connection.replyFailure(to: frame.requestID, error: ClusterError(.protocolViolation, "malformed all-reduce contribution"))
        }
        let values = AllReduceHub.floats(p[(12 + keyLength)...])
        Task {
            _ = try? await self.contribute(key: key, rank: rank, worldSize: worldSize, values: values,
                                           reply: (frame.requestID, connection))
        }
    }

    /// Adds a contribution; rank 0 (`reply == nil`) waits for the sum, peers are answered on their
    /// connection once it is complete.
    func contribute(key: String, rank: Int, worldSize: Int, values: [Float],
                    reply: (requestID: UInt64, connection: Connection)?) async throws -> [Float] {
        let own = reply == nil ? Promise<[Float]>() : nil
        let complete = rounds.withLock { r -> Round? in
            var round = r[key] ?? Round(worldSize: worldSize)
            round.contributions[rank] = values
            if let reply { round.replies.append(reply) }
            if let own { round.own = own }
            guard round.contributions.count == round.worldSize else {
                r[key] = round
                return nil
            }
            r[key] = nil
            return round
        }
        if let complete { finish(complete) }
        return try await own?.value() ?? []
    }

    private func finish(_ round: Round) {
        let count = round.contributions[0]?.count ?? 0
        guard round.contributions.values.allSatisfy({ $0.count == count }) else {
            let sizes = round.contributions.sorted { $0.key < $1.key }.map { "rank \($0.key): \($0.value.count)" }.joined(separator: ", ")
            let message = "all-reduce of different sizes (\(sizes))"
            for r in round.replies { r.connection.replyFailure(to: r.requestID, message: message) }
            round.own?.fail(ClusterError(.invalidArgument, message))
            return
        }
        var sum = [Float](repeating: 0, count: count)
        sum.withUnsafeMutableBufferPointer { out in
            for rank in 0..<round.worldSize {
                round.contributions[rank]?.withUnsafeBufferPointer { v in
                    // Raw pointers: this loop is the hub's whole cost, and unchecked it is fast even
                    // in debug builds.
                    let (o, x) = (out.baseAddress!, v.baseAddress!)
                    for i in 0..<count { o[i] += x[i] }
                }
            }
        }
        var bytes = [UInt8]()
        sum.withUnsafeBytes { bytes.append(contentsOf: $0) }
        for r in round.replies { r.connection.reply(to: r.requestID, payload: bytes) }
        round.own?.succeed(sum)
    }

    static func floats(_ bytes: ArraySlice<UInt8>) -> [Float] {
        let count = bytes.count / 4
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBytes { dst in bytes.withUnsafeBytes { dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<(count * 4)])) } }
        return out
    }
}

/// Built-in: runs `iterations` all-reduces of `floats` values among the ranks of this actor's group
/// (every rank must receive the call) and replies with the seconds they took and a checksum of the
/// last sum. For tests and `bench allreduce`-style figures.
public struct AllReduceProbe: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var seconds: Double
        /// The first element of the last sum: with rank r contributing r + 1 everywhere, n(n+1)/2.
        public var first: Float
        public var count: Int
    }
    public static let name = "colocate.allReduceProbe"
    public var floats: Int
    public var iterations: Int
    public init(floats: Int, iterations: Int) {
        self.floats = floats
        self.iterations = iterations
    }
}

import Foundation
import Synchronization

/// Data-parallel all-reduce (sum of f32) between the ranks of an actor group over the control plane:
/// across hosts on CPU virtual devices, where there is no NCCL. Correct and simple, a test mode:
/// every rank sends its values to rank 0 (raw little-endian f32 in one frame), rank 0 adds them **in
/// rank order** — every rank gets bitwise the same result, whatever the arrival order, and the same
/// one as `SharedMemoryAllReduce`, which adds in rank order too — and answers each rank with the sum.
/// Within a host the frames go over Unix sockets, between hosts over TCP authenticated by the
/// cluster secret.
///
///     let allReduce = ControlPlaneAllReduce(context: context)   // in each rank's actor
///     gradients = try await allReduce.sum(gradients)
///
/// Every rank must call `sum` the same number of times, in the same order, with the same count. A
/// rank that fails between calls calls `abort`: the round fails on every rank instead of waiting for
/// it, and so does every later one (the group has to be rebuilt), as with the shared-memory segment.
public final class ControlPlaneAllReduce: Sendable {
    /// The call name of a contribution (handled by the worker runtime on rank 0).
    static let callName = "colocate.allReduce"
    /// The call name of an abort (handled by the worker runtime on rank 0): payload `name`, a newline,
    /// the reason.
    static let abortName = "colocate.allReduceAbort"
    /// The largest contribution `sumBlocking` sends in one frame (16 MiB); longer arrays go in chunks.
    public static let chunkFloats = 1 << 22

    private let context: WorkerContext
    private let name: String
    public let rank: Int
    public let worldSize: Int
    /// Rank 0's address when it is not the context's group peer 0 (a group joined by call).
    private let root: ActorAddress?
    private let step = Mutex<UInt64>(0)

    /// The all-reduce of this actor's group (`Cluster.spawnGroup`). `name` tells apart several
    /// all-reduces of one group (default: the group's name).
    public init(context: WorkerContext, name: String? = nil) {
        self.context = context
        self.name = name ?? context.groupName ?? context.actorName
        rank = context.rank
        worldSize = context.worldSize
        root = nil
    }

    /// The all-reduce of a group the driver formed from separate actors: this actor is rank `rank` of
    /// `worldSize`, and rank 0 listens at `root`. `name` must be the same on every rank.
    public init(context: WorkerContext, name: String, rank: Int, worldSize: Int, root: ActorAddress) {
        precondition(rank >= 0 && rank < worldSize)
        self.context = context
        self.name = name
        self.rank = rank
        self.worldSize = worldSize
        self.root = root
    }

    /// The element-wise sum of `values` over every rank of the group.
    public func sum(_ values: [Float], timeout: Duration = ActorRef.defaultCallTimeout) async throws -> [Float] {
        let step = self.step.withLock { s in
            s += 1
            return s
        }
        if worldSize == 1 { return values }
        let key = "\(name)/\(step)"
        if rank == 0 {
            return try await AllReduceHub.shared.contribute(key: key, rank: 0, worldSize: worldSize, values: values, reply: nil, timeout: timeout)
        }
        var payload = [UInt8]()
        payload.reserveCapacity(12 + key.utf8.count + values.count * 4)
        payload.append(contentsOf: withUnsafeBytes(of: UInt32(rank).littleEndian, Array.init))
        payload.append(contentsOf: withUnsafeBytes(of: UInt32(worldSize).littleEndian, Array.init))
        payload.append(contentsOf: withUnsafeBytes(of: UInt32(key.utf8.count).littleEndian, Array.init))
        payload.append(contentsOf: key.utf8)
        values.withUnsafeBytes { payload.append(contentsOf: $0) }
        let frame = try await rootRef().connection.call(name: ControlPlaneAllReduce.callName, payload: payload, timeout: timeout)
        return AllReduceHub.floats(frame.payload[...])
    }

    /// `sum` in place over `buffer`, in chunks of at most `chunkFloats`, for synchronous callers (a
    /// training step's gradient all-reduce). Blocks the calling thread: call it from a thread of its
    /// own (`BlockingWork`), never from a task, since the frames are sent and answered by tasks.
    public func sumBlocking(_ buffer: UnsafeMutableBufferPointer<Float>, timeout: Duration = ActorRef.defaultCallTimeout) throws {
        var start = 0
        while start < buffer.count {
            let n = min(Self.chunkFloats, buffer.count - start)
            let chunk = Array(buffer[start..<(start + n)])
            let done = Promise<[Float]>()
            Task {
                do { done.succeed(try await self.sum(chunk, timeout: timeout)) } catch { done.fail(error) }
            }
            // The call's own deadline ends the task first; this one only guards against a lost task.
            guard let result = done.waitBlocking(timeout: timeout + .seconds(5)) else {
                throw ClusterError(.timedOut, "the all-reduce '\(name)' did not finish within \(timeout)")
            }
            let sum = try result.get()
            guard sum.count == n else {
                throw ClusterError(.protocolViolation, "the all-reduce '\(name)' returned \(sum.count) values for \(n)")
            }
            _ = UnsafeMutableBufferPointer(rebasing: buffer[start..<(start + n)]).update(fromContentsOf: sum)
            start += n
        }
    }

    /// Fails the round in progress and every later one on every rank (this rank's step failed, or a
    /// peer died): ranks waiting for this one throw instead of waiting forever. Waits for nothing.
    public func abort(reason: String) {
        if rank == 0 {
            AllReduceHub.shared.abort(name: name, reason: reason)
            return
        }
        let payload = Array((name + "\n" + reason).utf8)
        let root = try? rootRef()
        Task { _ = try? await root?.connection.call(name: ControlPlaneAllReduce.abortName, payload: payload, timeout: .seconds(10)) }
    }

    /// Driver side: aborts the all-reduce `name` whose rank 0 is `rank0` (a rank died, so its peers
    /// would wait for it forever). Returns once rank 0 has it, or failed to answer.
    public static func abort(name: String, rank0: ActorRef, reason: String) async {
        _ = try? await rank0.connection.call(name: abortName, payload: Array((name + "\n" + reason).utf8), timeout: .seconds(10))
    }

    private func rootRef() throws -> ActorRef {
        if let root { return try context.connect(to: root) }
        return try context.peer(rank: 0)
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

    private struct State {
        var rounds: [String: Round] = [:]
        /// All-reduces aborted, by name, with the reason: their rounds fail from then on.
        var aborted: [String: String] = [:]
        /// Connections that brought contributions, watched for their end (a rank that died).
        var watched: Set<ObjectIdentifier> = []
    }

    private let state = Mutex(State())

    /// The all-reduce a round key (`name/step`) belongs to.
    static func name(ofKey key: String) -> String {
        key.lastIndex(of: "/").map { String(key[..<$0]) } ?? key
    }

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
        watch(connection, rank: rank, name: AllReduceHub.name(ofKey: key))
        let values = AllReduceHub.floats(p[(12 + keyLength)...])
        Task {
            _ = try? await self.contribute(key: key, rank: rank, worldSize: worldSize, values: values,
                                           reply: (frame.requestID, connection))
        }
    }

    /// An abort from a peer or the driver: payload `name`, newline, reason.
    func receivedAbort(_ frame: Frame, on connection: Connection) {
        let text = String(decoding: frame.payload, as: UTF8.self)
        let parts = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        // Off the reader thread: failing the rounds writes to other connections.
        Task {
            abort(name: String(parts[0]), reason: parts.count > 1 ? String(parts[1]) : "aborted")
            connection.reply(to: frame.requestID, payload: [])
        }
    }

    /// The end of a connection that brought rank `rank`'s contributions aborts its all-reduce: rank 0
    /// would otherwise wait for that rank forever.
    private func watch(_ connection: Connection, rank: Int, name: String) {
        let id = ObjectIdentifier(connection)
        guard state.withLock({ $0.watched.insert(id).inserted }) else { return }
        connection.updateHooks { h in
            let previous = h.onClose
            h.onClose = {
                previous()
                // On the connection's reader thread: failing the rounds writes to other connections.
                Task {
                    self.state.withLock { _ = $0.watched.remove(id) }
                    self.abort(name: name, reason: "rank \(rank)'s connection to rank 0 ended (the rank died or left)")
                }
            }
        }
    }

    /// Fails every round of all-reduce `name` in progress, and every later one.
    func abort(name: String, reason: String) {
        let failed = state.withLock { s -> [Round] in
            if s.aborted[name] == nil { s.aborted[name] = reason }
            let keys = s.rounds.keys.filter { AllReduceHub.name(ofKey: $0) == name }
            return keys.compactMap { s.rounds.removeValue(forKey: $0) }
        }
        for round in failed { fail(round, message: "the all-reduce '\(name)' was aborted: \(reason)") }
    }

    /// Adds a contribution; rank 0 (`reply == nil`) waits for the sum (at most `timeout`), peers are
    /// answered on their connection once it is complete.
    func contribute(key: String, rank: Int, worldSize: Int, values: [Float],
                    reply: (requestID: UInt64, connection: Connection)?, timeout: Duration? = nil) async throws -> [Float] {
        let own = reply == nil ? Promise<[Float]>() : nil
        let name = AllReduceHub.name(ofKey: key)
        let (complete, aborted) = state.withLock { s -> (Round?, String?) in
            if let reason = s.aborted[name] { return (nil, reason) }
            var round = s.rounds[key] ?? Round(worldSize: worldSize)
            round.contributions[rank] = values
            if let reply { round.replies.append(reply) }
            if let own { round.own = own }
            guard round.contributions.count == round.worldSize else {
                s.rounds[key] = round
                return (nil, nil)
            }
            s.rounds[key] = nil
            return (round, nil)
        }
        if let aborted {
            let message = "the all-reduce '\(name)' was aborted: \(aborted)"
            if let reply { reply.connection.replyFailure(to: reply.requestID, message: message) }
            throw ClusterError(message)
        }
        if let complete { finish(complete) }
        guard let own else { return [] }
        guard let timeout else { return try await own.value() }
        guard let result = await own.value(timeout: timeout) else {
            abort(name: name, reason: "rank 0 waited \(timeout) for the other ranks")
            throw ClusterError(.timedOut, "the all-reduce '\(name)' did not complete within \(timeout): a rank never contributed")
        }
        return try result.get()
    }

    private func fail(_ round: Round, message: String) {
        for r in round.replies { r.connection.replyFailure(to: r.requestID, message: message) }
        round.own?.fail(ClusterError(message))
    }

    private func finish(_ round: Round) {
        let count = round.contributions[0]?.count ?? 0
        guard round.contributions.values.allSatisfy({ $0.count == count }) else {
            let sizes = round.contributions.sorted { $0.key < $1.key }.map { "rank \($0.key): \($0.value.count)" }.joined(separator: ", ")
            fail(round, message: "all-reduce of different sizes (\(sizes))")
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

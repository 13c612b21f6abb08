import Compute

/// A handle to a remote actor: the driver's to the actors it spawned, a worker's to its peers and
/// to the driver. Calls are typed and async; several may be in flight at once.
public final class ActorRef: Sendable, CustomStringConvertible {
    public let name: String
    /// Where peers can reach the actor (give it to other actors to let them call it).
    public let address: ActorAddress
    /// The actor's process id, when known.
    public let pid: Int32?
    /// The device it was placed on (known on the driver side; nil when it holds none).
    public let device: Device?
    /// Its share of `device` (0 when none).
    public let deviceFraction: Double
    /// How long a call waits for its reply unless the call says otherwise (`ClusterOptions.callTimeout`
    /// for the driver's references).
    public let callTimeout: Duration

    /// The deadline of a call when nobody chose one: long enough for loading a model or a long
    /// generation, short enough that a hung worker is reported rather than waited for forever.
    public static let defaultCallTimeout: Duration = .seconds(600)

    let connection: Connection
    private let control: Control?

    /// Driver-side process control: stopping goes through the cluster, so shares are released.
    struct Control: Sendable {
        var stop: @Sendable () async -> Void
        var kill: @Sendable () -> Void
        var termination: @Sendable () -> Termination?
    }

    init(name: String, address: ActorAddress, pid: Int32?, device: Device?, deviceFraction: Double,
         connection: Connection, control: Control?, callTimeout: Duration = ActorRef.defaultCallTimeout) {
        self.callTimeout = callTimeout
        self.name = name
        self.address = address
        self.pid = pid
        self.device = device
        self.deviceFraction = deviceFraction
        self.connection = connection
        self.control = control
    }

    public var description: String { "ActorRef(\(name), pid \(pid.map(String.init) ?? "?"))" }

    /// Calls the actor and returns its reply. Throws `RemoteError` when its handler threw,
    /// `ActorDiedError` when it is gone (its pending calls fail too, within moments of its death), and
    /// `ClusterError` with code `.timedOut` when no reply came within `timeout` (default
    /// `callTimeout`) or `.cancelled` when the calling task was cancelled.
    public func call<C: RemoteCall>(_ call: C, timeout: Duration? = nil) async throws -> C.Reply {
        try await self.call(call, attachments: [], timeout: timeout).0
    }

    /// Calls the actor with descriptors attached (the receiver gets its own copies; the caller keeps
    /// its `OwnedFD`s) and returns the reply with the descriptors attached to it.
    public func call<C: RemoteCall>(_ call: C, attachments: [OwnedFD], timeout: Duration? = nil) async throws -> (C.Reply, [OwnedFD]) {
        let frame = try await connection.call(name: C.name, payload: try WireCodec.encodePayload(call), attachments: attachments,
                                              timeout: timeout ?? callTimeout)
        let reply = try WireCodec.decode(C.Reply.self, from: frame.payload, what: "the reply to '\(C.name)' from '\(name)'")
        return (reply, frame.attachments)
    }

    /// Stops the actor: asks it to exit, kills it after the cluster's grace period, and releases its
    /// device share. On a worker's reference to a peer this only closes the connection.
    public func stop() async {
        if let control { await control.stop() } else { connection.close() }
    }

    /// SIGKILL to the actor's process group, at once (driver side only; a no-op on peer references).
    public func kill() { control?.kill() }

    /// How its process ended, once it has (driver side only).
    public var termination: Termination? { control?.termination() }
}

/// The processes of one actor that spans several ranks (one per tensor-parallel rank).
public final class ActorGroup: Sendable {
    public let name: String
    /// The ranks, in order.
    public let ranks: [ActorRef]

    init(name: String, ranks: [ActorRef]) {
        self.name = name
        self.ranks = ranks
    }

    /// Sends the same call to every rank concurrently; replies in rank order. See `callEach` for
    /// `timeout` and `failFast`.
    public func callAll<C: RemoteCall>(_ call: C, timeout: Duration? = nil, failFast: Bool = false) async throws -> [C.Reply] {
        try await callEach(Array(repeating: call, count: ranks.count), timeout: timeout, failFast: failFast)
    }

    /// Sends `calls[i]` to rank i concurrently; replies in rank order. Throws the first error (in
    /// time). By default that is thrown once every call has ended, so no rank is left mid-call; with
    /// `failFast` it is thrown at once and the other calls are cancelled.
    public func callEach<C: RemoteCall>(_ calls: [C], timeout: Duration? = nil, failFast: Bool = false) async throws -> [C.Reply] {
        guard calls.count == ranks.count else {
            throw ClusterError(.invalidArgument, "callEach got \(calls.count) calls for the \(ranks.count) ranks of '\(name)'")
        }
        return try await withThrowingTaskGroup(of: (Int, Result<C.Reply, any Error>).self) { group in
            for (i, rank) in ranks.enumerated() {
                let call = calls[i]
                group.addTask {
                    do {
                        return (i, .success(try await rank.call(call, timeout: timeout)))
                    } catch {
                        return (i, .failure(error))
                    }
                }
            }
            var replies = [C.Reply?](repeating: nil, count: ranks.count)
            var firstError: (any Error)?
            for try await (i, result) in group {
                switch result {
                case .success(let reply):
                    replies[i] = reply
                case .failure(let error):
                    if firstError == nil { firstError = error }
                    if failFast {
                        group.cancelAll()
                        throw error
                    }
                }
            }
            if let firstError { throw firstError }
            return replies.map { $0! }
        }
    }

    /// Stops every rank.
    public func stop() async {
        await withTaskGroup(of: Void.self) { group in
            for rank in ranks { group.addTask { await rank.stop() } }
        }
    }
}

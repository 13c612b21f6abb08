/// What a handler gets besides the call itself.
public struct CallContext: Sendable {
    /// Descriptors attached to the call, owned by the handler (closed when dropped).
    public let attachments: [OwnedFD]
    /// Who called: an actor's name, "driver", or "peer pid N".
    public let caller: String
}

/// The calls a process answers, by name. An actor fills one in `handlers(into:)`; the driver may
/// fill one (`ClusterOptions.driverHandlers`) to answer calls from its workers.
///
///     handlers.on(ReportLoss.self) { call, ctx in
///         try await self.report(call.loss)
///     }
public struct Handlers: Sendable {
    struct Entry: Sendable {
        /// Runs at once in its own task instead of in the actor's one-at-a-time order.
        var concurrent: Bool
        var run: @Sendable (_ payload: [UInt8], _ context: CallContext) async throws -> ([UInt8], [OwnedFD])
        /// A handler that blocks its thread (`onBlocking`): a worker runs it on the actor's own thread;
        /// `run` runs it on a thread of its own (`BlockingWork`) for callers on the cooperative pool.
        var blocking: (@Sendable (_ payload: [UInt8], _ context: CallContext) throws -> ([UInt8], [OwnedFD]))?
    }

    private(set) var entries: [String: Entry] = [:]

    public init() {}

    /// Answers `C` with `body`'s reply. Calls run one at a time in arrival order (like a Ray actor)
    /// unless `concurrent`.
    public mutating func on<C: RemoteCall>(
        _ call: C.Type, concurrent: Bool = false,
        _ body: @escaping @Sendable (C, CallContext) async throws -> C.Reply
    ) {
        entries[C.name] = Entry(concurrent: concurrent) { payload, context in
            let value = try WireCodec.decode(C.self, from: payload, what: "call '\(C.name)'")
            return (try WireCodec.encodePayload(try await body(value, context)), [])
        }
    }

    /// Answers `C` with `body`, which may block its thread — a futex wait on a weight gate, a device
    /// synchronisation — and must not suspend. In a worker it runs on the actor's own thread, in the
    /// actor's one-at-a-time order: no task, no thread per call, no cooperative-pool thread blocked,
    /// and the reply leaves from that thread. Elsewhere (driver handlers) it runs on a thread of its
    /// own per call (`BlockingWork`).
    public mutating func onBlocking<C: RemoteCall>(
        _ call: C.Type, _ body: @escaping @Sendable (C, CallContext) throws -> C.Reply
    ) {
        let blocking: @Sendable ([UInt8], CallContext) throws -> ([UInt8], [OwnedFD]) = { payload, context in
            let value = try WireCodec.decode(C.self, from: payload, what: "call '\(C.name)'")
            return (try WireCodec.encodePayload(try body(value, context)), [])
        }
        entries[C.name] = Entry(concurrent: false, run: { payload, context in
            try await BlockingWork.run(name: "colocate.handler") { try blocking(payload, context) }
        }, blocking: blocking)
    }

    /// Answers `C` with a reply and descriptors attached to it (sent with `SCM_RIGHTS`; this side's
    /// copies close when the returned `OwnedFD`s are dropped).
    public mutating func onAttaching<C: RemoteCall>(
        _ call: C.Type, concurrent: Bool = false,
        _ body: @escaping @Sendable (C, CallContext) async throws -> (C.Reply, [OwnedFD])
    ) {
        entries[C.name] = Entry(concurrent: concurrent) { payload, context in
            let value = try WireCodec.decode(C.self, from: payload, what: "call '\(C.name)'")
            let (reply, fds) = try await body(value, context)
            return (try WireCodec.encodePayload(reply), fds)
        }
    }

    /// Adds every handler of `other` (replacing same-named ones).
    public mutating func merge(_ other: Handlers) {
        entries.merge(other.entries) { _, new in new }
    }

    /// The call names handled, sorted.
    public var names: [String] { entries.keys.sorted() }

    /// Runs a blocking `entry` on the calling thread (which it may block) and sends the reply or
    /// failure on `connection`.
    static func executeBlocking(_ entry: Entry, frame: Frame, on connection: Connection) {
        guard let blocking = entry.blocking else { preconditionFailure("executeBlocking of a handler that is not blocking") }
        let context = CallContext(attachments: frame.attachments, caller: connection.peerName)
        do {
            let (bytes, fds) = try blocking(frame.payload, context)
            connection.reply(to: frame.requestID, payload: bytes, attachments: fds)
        } catch {
            connection.replyFailure(to: frame.requestID, error: error)
        }
    }

    /// Runs `entry` for an incoming call frame and sends the reply or failure on `connection`.
    static func execute(_ entry: Entry, frame: Frame, on connection: Connection) async {
        let context = CallContext(attachments: frame.attachments, caller: connection.peerName)
        do {
            let (bytes, fds) = try await entry.run(frame.payload, context)
            connection.reply(to: frame.requestID, payload: bytes, attachments: fds)
        } catch {
            connection.replyFailure(to: frame.requestID, error: error)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Compute
import CShims
import Synchronization

/// One end of an actor connection: both ends may call and answer.
///
/// A dedicated reader thread does blocking reads, parses frames, resumes the continuation waiting for
/// each reply and hands each incoming call to `onCall`. Writes happen under a lock, so a frame and the
/// descriptors that ride before it are never interleaved with another frame. When the peer goes away
/// (EOF, error, or `close()`), every pending and later call fails with the error `closeReason`
/// produces — for a worker process, one that names its exit status — so nothing waits forever.
///
/// A call also ends at its deadline (`ClusterError.Code.timedOut`, naming the peer; one thread watches
/// every deadline of the process, `CallDeadlines`) and when its task is cancelled; a late reply is
/// dropped. `close()` never waits for a send in progress: it shuts the socket down (which fails a
/// blocked send at once) under a lock that is only held for that.
final class Connection: Sendable {
    struct Hooks: Sendable {
        /// Name of the peer for errors ("trainer-0", "driver").
        var peerName: String
        /// An incoming call; the receiver answers with `reply` / `replyFailure`.
        var onCall: @Sendable (Frame, Connection) -> Void = { frame, conn in
            conn.replyFailure(to: frame.requestID, error: ClusterError(.invalidArgument, "this end accepts no calls ('\(frame.name)')"))
        }
        /// The error pending calls fail with once the connection ends. Runs on the reader thread and
        /// may block briefly (to reap the peer's exit status).
        var closeReason: (@Sendable () -> any Error)?
        /// Called once, after the connection ended and pending calls failed.
        var onClose: @Sendable () -> Void = {}
    }

    /// A call waiting for its reply, and when it gives up.
    private struct Pending {
        var continuation: CheckedContinuation<Frame, any Error>
        var deadline: ContinuousClock.Instant?
        var name: String
        var timeout: Duration?
    }

    private struct State {
        var pending: [UInt64: Pending] = [:]
        var failure: (any Error)?
        var nextID: UInt64 = 0
    }

    private let fd: Int32
    private let hooks: Mutex<Hooks>
    private let state = Mutex(State())
    /// Serialises writes; held for the whole of a send, which may block on a full socket.
    private let writer = Mutex(())
    /// Guards the descriptor's life: `true` once the reader closed it. Held only for a `shutdown` or the
    /// `close`, never across a send, so `close()` does not wait behind a blocked send.
    private let life = Mutex(false)
    private let started = Atomic(false)
    /// False over TCP: descriptors cannot cross hosts, so attachments are refused rather than sent.
    let carriesDescriptors: Bool

    /// Adopts a connected socket, which it closes once the connection has ended. Nothing is read until
    /// `start()`. Over TCP `carriesDescriptors` is false: attachments are refused rather than sent.
    init(fd: consuming UniqueFileDescriptor, hooks: Hooks, carriesDescriptors: Bool = true) {
        self.fd = fd.take()
        self.hooks = Mutex(hooks)
        self.carriesDescriptors = carriesDescriptors
    }

    var peerName: String { hooks.withLock { $0.peerName } }

    func updateHooks(_ body: (inout Hooks) -> Void) { hooks.withLock { body(&$0) } }

    /// Starts the reader thread.
    func start() {
        guard !started.exchange(true, ordering: .relaxed) else { return }
        startThread(name: "colocate.conn") { [self] in readLoop() }
    }

    /// Ends the connection: pending calls fail, the peer sees EOF. Idempotent.
    func close() {
        breakConnection()
        if !started.exchange(true, ordering: .relaxed) {
            // Never started: no reader will close the descriptor.
            finish()
        }
    }

    /// The error calls fail with, once the connection ended.
    var failure: (any Error)? { state.withLock { $0.failure } }

    // MARK: Calls

    /// Sends a call and waits for its reply frame. A failure frame throws `RemoteError`; no reply
    /// within `timeout` throws `ClusterError` `.timedOut`, cancelling the task `.cancelled` (the call
    /// may still run on the peer; its reply is dropped).
    func call(name: String, payload: [UInt8], attachments: [OwnedFD] = [], timeout: Duration? = nil) async throws -> Frame {
        try validate(attachments)
        let id = state.withLock { s in
            s.nextID &+= 1
            return s.nextID
        }
        // Encoded before anything is registered: a message too large fails here, and only this call.
        let bytes = try Frame(kind: .call, requestID: id, name: name, payload: payload).encoded(fdCount: attachments.count)
        let peer = peerName
        // The deadline: one shared thread watches every call's (`CallDeadlines`); the legacy path arms
        // a timer task per call instead.
        let deadline = timeout.map { ContinuousClock.now + $0 }
        let timer = RPCPath.legacy ? timeout.map { timeout in
            Task { [weak self] in
                try await Task.sleep(for: timeout)
                self?.fail(id, ClusterError(.timedOut, "actor '\(peer)' did not answer '\(name)' within \(timeout)"))
            }
        } : nil
        defer { timer?.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Frame, any Error>) in
                let failure: (any Error)? = state.withLock { s in
                    if let failure = s.failure { return failure }
                    s.pending[id] = Pending(continuation: c, deadline: RPCPath.legacy ? nil : deadline, name: name, timeout: timeout)
                    return nil
                }
                if let failure {
                    c.resume(throwing: failure)
                    return
                }
                if let deadline, !RPCPath.legacy { CallDeadlines.shared.watch(self, until: deadline) }
                // Cancelled before the continuation was registered: the handler found nothing to end.
                if Task.isCancelled {
                    fail(id, ClusterError(.cancelled, "the call '\(name)' to actor '\(peer)' was cancelled"))
                    return
                }
                do {
                    try write(bytes, requestID: id, attachments: attachments)
                } catch {
                    // A failed send leaves the stream unusable (part of a frame may be out): end the
                    // connection; the reader then fails this call and the others with the peer's fate.
                    breakConnection()
                }
            }
        } onCancel: {
            fail(id, ClusterError(.cancelled, "the call '\(name)' to actor '\(peer)' was cancelled"))
        }
    }

    /// Fails the calls whose deadline is `now` or earlier (`ClusterError.Code.timedOut`, naming the
    /// peer); returns the earliest deadline still pending, if any.
    func expireCalls(at now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        let (overdue, next) = state.withLock { s -> ([Pending], ContinuousClock.Instant?) in
            var overdue: [Pending] = []
            var next: ContinuousClock.Instant?
            for (id, p) in s.pending {
                guard let deadline = p.deadline else { continue }
                if deadline <= now {
                    overdue.append(p)
                    s.pending[id] = nil
                } else {
                    next = next.map { min($0, deadline) } ?? deadline
                }
            }
            return (overdue, next)
        }
        let peer = peerName
        for p in overdue {
            let within = p.timeout.map { "\($0)" } ?? "its deadline"
            p.continuation.resume(throwing: ClusterError(.timedOut, "actor '\(peer)' did not answer '\(p.name)' within \(within)"))
        }
        return next
    }

    /// Ends call `id` with `error`, if it is still waiting.
    private func fail(_ id: UInt64, _ error: any Error) {
        state.withLock { $0.pending.removeValue(forKey: id) }?.continuation.resume(throwing: error)
    }

    func reply(to requestID: UInt64, payload: [UInt8], attachments: [OwnedFD] = []) {
        do {
            try validate(attachments)
        } catch {
            replyFailure(to: requestID, error: error)
            return
        }
        let bytes: [UInt8]
        do {
            bytes = try Frame(kind: .reply, requestID: requestID, name: "", payload: payload).encoded(fdCount: attachments.count)
        } catch {
            replyFailure(to: requestID, error: ClusterError(error.code, "the reply is too large to send: \(error.message)"))
            return
        }
        do {
            try write(bytes, requestID: requestID, attachments: attachments)
        } catch {
            breakConnection()
        }
    }

    /// Answers call `requestID` with a failure: `error`'s message, with its type and code when it is a
    /// `CodedError` (see `RemoteFailure`).
    func replyFailure(to requestID: UInt64, error: any Error) {
        replyFailure(to: requestID, RemoteFailure(describing: error))
    }

    /// Answers call `requestID` with a failure without a code.
    func replyFailure(to requestID: UInt64, message: String) {
        replyFailure(to: requestID, RemoteFailure(message: message))
    }

    private func replyFailure(to requestID: UInt64, _ failure: RemoteFailure) {
        do {
            let bytes = try Frame(kind: .failure, requestID: requestID, name: "", payload: failure.encoded()).encoded(fdCount: 0)
            try write(bytes, requestID: requestID, attachments: [])
        } catch {
            breakConnection()
        }
    }

    private func validate(_ attachments: [OwnedFD]) throws(ClusterError) {
        guard carriesDescriptors || attachments.isEmpty else {
            throw ClusterError(.invalidArgument, "file descriptors cannot be sent to '\(peerName)': it is reached over TCP (another host); shared memory works only between the processes of one host")
        }
        guard attachments.count <= 255 else {
            throw ClusterError("a message carries at most 255 file descriptors, got \(attachments.count)")
        }
        for a in attachments where a.rawValue < 0 {
            throw ClusterError("an attachment was closed or released before it was sent")
        }
    }

    /// Shuts the socket down so that the reader ends (unless it already closed the descriptor). A send
    /// blocked on the socket fails at once; this does not wait for it.
    private func breakConnection() {
        life.withLock { closed in
            if !closed { _ = shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Sends an encoded frame and its descriptors. The descriptor stays open while this runs: the
    /// reader closes it only under `writer` (see `finish`).
    private func write(_ bytes: [UInt8], requestID: UInt64, attachments: [OwnedFD]) throws(ClusterError) {
        let carrier = attachments.count > 1
            ? try Frame(kind: .fdCarrier, requestID: requestID, name: "", payload: []).encoded(fdCount: 0) : []
        try writer.withLock { (_) throws(ClusterError) in
            guard !life.withLock({ $0 }) else { throw ClusterError(.connectionClosed, "connection to '\(peerName)' is closed") }
            for a in attachments.dropLast() {
                try UnixSocket.sendAll(fd, carrier, attach: a.rawValue)
            }
            try UnixSocket.sendAll(fd, bytes, attach: attachments.last?.rawValue ?? -1)
        }
    }

    // MARK: Reader

    private func readLoop() {
        var buffer = [UInt8]()
        var descriptors: [OwnedFD] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        reading: while true {
            var received: Int32 = -1
            let n = chunk.withUnsafeMutableBytes { cshim_recv_with_fd(fd, $0.baseAddress, $0.count, &received) }
            if received >= 0 { descriptors.append(OwnedFD(adopting: received)) }
            if n <= 0 { break }
            buffer.append(contentsOf: chunk[0..<n])
            var consumed = 0
            while true {
                let parsed: (frame: Frame, fdCount: Int, size: Int)?
                do {
                    parsed = try buffer.withUnsafeBytes { (raw) throws(ClusterError) in
                        try Frame.parse(UnsafeRawBufferPointer(rebasing: raw[consumed...]))
                    }
                } catch {
                    break reading
                }
                guard let (frame, fdCount, size) = parsed else { break }
                consumed += size
                guard frame.kind != .fdCarrier else { continue }
                guard fdCount <= descriptors.count else { break reading }
                var complete = frame
                complete.attachments = Array(descriptors.prefix(fdCount))
                descriptors.removeFirst(fdCount)
                deliver(complete)
            }
            if consumed > 0 { buffer.removeFirst(consumed) }
        }
        finish()
    }

    private func deliver(_ frame: Frame) {
        switch frame.kind {
        case .call:
            hooks.withLock { $0.onCall }(frame, self)
        case .reply, .failure:
            guard let c = state.withLock({ $0.pending.removeValue(forKey: frame.requestID) })?.continuation else { return }
            if frame.kind == .reply {
                c.resume(returning: frame)
            } else {
                let failure = RemoteFailure.decode(frame.payload)
                c.resume(throwing: RemoteError(actor: peerName, message: failure.message, errorType: failure.type, codeName: failure.code))
            }
        case .fdCarrier:
            break
        }
    }

    private func finish() {
        let h = hooks.withLock { $0 }
        let error = h.closeReason?() ?? ActorDiedError(actor: h.peerName, pid: nil, termination: nil)
        // No send is in progress once `writer` is ours, and none starts after `closed` is set.
        writer.withLock { _ in
            life.withLock { closed in
                if !closed {
                    closed = true
                    Glibc.close(fd)
                }
            }
        }
        let pending = state.withLock { s in
            if s.failure == nil { s.failure = error }
            defer { s.pending = [:] }
            return s.pending.values.map(\.continuation)
        }
        for c in pending { c.resume(throwing: error) }
        h.onClose()
    }
}

import Synchronization

/// An actor's calls, run one at a time in arrival order (like a Ray actor); a concurrent handler is
/// started in its turn and does not hold up the next call.
///
/// Each call goes straight from the connection's reader thread to where it runs, with one hand-off
/// and no task in between: an async handler to a task of its own, a blocking handler
/// (`Handlers.onBlocking`) to the actor's own thread, which it may block and from which its reply
/// leaves. Calls that arrive before the actor has its handlers wait for them.
final class Mailbox: Sendable {
    struct Job: Sendable {
        var frame: Frame
        var connection: Connection
    }

    private struct State {
        var handlers: Handlers?
        var queue: [Job] = []
        var head = 0
        /// A call is running (or the handlers are not there yet): new calls queue.
        var busy = true

        mutating func next() -> Job? {
            guard head < queue.count else {
                queue.removeAll(keepingCapacity: true)
                head = 0
                busy = false
                return nil
            }
            defer { head += 1 }
            return queue[head]
        }
    }

    private let actorName: String
    private let state = Mutex(State())
    /// Where blocking handlers run, started with the first; lives as long as the process.
    private let thread = Mutex<DedicatedThread?>(nil)

    init(actorName: String) { self.actorName = actorName }

    /// Starts running calls, those queued first.
    func open(with handlers: Handlers) {
        let first = state.withLock { s -> Job? in
            s.handlers = handlers
            return s.next()
        }
        if let first { run(first) }
    }

    /// Called on a connection's reader thread, which must never block on a write (two readers each
    /// blocked writing to the other would deadlock): nothing here writes or waits.
    func submit(_ job: Job) {
        let now = state.withLock { s -> Bool in
            if s.busy {
                s.queue.append(job)
                return false
            }
            s.busy = true
            return true
        }
        if now { run(job) }
    }

    /// Runs `job` and, as long as the calls after it need not wait for it, those too.
    private func run(_ first: Job) {
        var next: Job? = first
        while let job = next {
            guard start(job) else { return }  // ends with `finished()`
            next = state.withLock { $0.next() }
        }
    }

    /// Starts `job`; true when the next call may start at once (the job was concurrent, or answered).
    private func start(_ job: Job) -> Bool {
        guard let handlers = state.withLock({ $0.handlers }), let entry = handlers.entries[job.frame.name] else {
            let known = state.withLock { $0.handlers?.names ?? [] }.joined(separator: ", ")
            let error = ClusterError(.invalidArgument, "actor '\(actorName)' has no handler for '\(job.frame.name)'; it handles: [\(known)]")
            Task { job.connection.replyFailure(to: job.frame.requestID, error: error) }
            return true
        }
        if entry.concurrent {
            Task { await Handlers.execute(entry, frame: job.frame, on: job.connection) }
            return true
        }
        if entry.blocking != nil && !RPCPath.legacy {
            actorThread().post { [self] in
                Handlers.executeBlocking(entry, frame: job.frame, on: job.connection)
                finished()
            }
            return false
        }
        Task {
            await Handlers.execute(entry, frame: job.frame, on: job.connection)
            finished()
        }
        return false
    }

    /// The running call ended: the next one starts.
    private func finished() {
        if let next = state.withLock({ $0.next() }) { run(next) }
    }

    private func actorThread() -> DedicatedThread {
        thread.withLock { t in
            if let t { return t }
            let made = DedicatedThread(name: "colocate.actor")
            t = made
            return made
        }
    }
}

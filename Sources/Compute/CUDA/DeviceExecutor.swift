#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// One dedicated OS thread that runs all the work of one device, in submission order.
///
/// A CUDA context is current per *thread*, and Swift tasks hop between threads; so every device gets
/// one thread on which its context is made current once (`setUp`), and work is sent there. Work
/// submitted from the executor's own thread runs inline, so a whole forward pass sent with ``run(_:)``
/// calls the ops without any further hop.
public final class DeviceExecutor: @unchecked Sendable {
    public let name: String
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var queue: [() -> Void] = []  // guarded by mutex
    private var thread = pthread_t()      // written once by the thread itself, before `ready`

    /// Starts the thread and runs `setUp` on it before any job (for CUDA: make the context current).
    public init(name: String, setUp: @escaping @Sendable () -> Void) {
        self.name = name
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        let ready = DispatchSemaphore(value: 0)
        let start = ThreadStart(executor: self, setUp: setUp, ready: ready)
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { raw in
            let start = Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue()
            start.executor.thread = pthread_self()
            start.setUp()
            start.ready.signal()
            start.executor.loop()
            return nil
        }, Unmanaged.passRetained(start).toOpaque())
        precondition(result == 0, "cannot start the device thread \(name): error \(result)")
        pthread_detach(handle)
        ready.wait()
    }

    /// Whether the caller is running on this executor's thread.
    public var isCurrent: Bool { pthread_equal(pthread_self(), thread) != 0 }

    /// Queues `job` to run on the thread. Jobs run one at a time, in order.
    public func submit(_ job: @escaping @Sendable () -> Void) {
        enqueue(job)
    }

    private func enqueue(_ job: @escaping () -> Void) {
        pthread_mutex_lock(mutex)
        queue.append(job)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Runs `body` on the thread and waits for it, blocking the caller (inline when already there).
    /// For the synchronous op set. Never from a Swift concurrency pool thread: the wait (a semaphore)
    /// would hold one of the pool's few threads for as long as the device is busy. Async code uses
    /// ``run(_:)``, which suspends instead; a handler that runs synchronous model code runs it on a
    /// thread of its own (the engine and trainer use Cluster's `BlockingWork`), where this is fine.
    public func sync<T>(_ body: () throws -> T) throws -> T {
        if isCurrent { return try body() }
        return try withoutActuallyEscaping(body) { body in
            let box = ResultBox<T>()
            let done = DispatchSemaphore(value: 0)
            // The job drops the body before signalling: the queue may still hold the job itself when the
            // caller resumes, and `withoutActuallyEscaping` traps if the body is referenced then.
            let holder = BodyHolder(body)
            enqueue {
                box.result = Result { try holder.take()() }
                done.signal()
            }
            done.wait()  // the closure cannot outlive this call: we wait for it
            return try box.result!.get()
        }
    }

    /// Runs `body` on the thread, suspending the caller until it is done (inline when already there).
    public func run<T>(_ body: () throws -> T) async throws -> T {
        if isCurrent { return try body() }
        return try await withoutActuallyEscaping(body) { body in
            let holder = BodyHolder(body)
            let box: ResultBox<T> = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ResultBox<T>, any Error>) in
                enqueue {
                    let box = ResultBox<T>()
                    box.result = Result { try holder.take()() }
                    continuation.resume(returning: box)
                }
            }
            return try box.result!.get()  // the caller was suspended meanwhile: no concurrent access
        }
    }

    private func loop() {
        while true {
            pthread_mutex_lock(mutex)
            while queue.isEmpty { pthread_cond_wait(condition, mutex) }
            let jobs = queue
            queue.removeAll(keepingCapacity: true)
            pthread_mutex_unlock(mutex)
            for job in jobs { job() }
        }
    }
}

private final class ThreadStart {
    let executor: DeviceExecutor
    let setUp: @Sendable () -> Void
    let ready: DispatchSemaphore
    init(executor: DeviceExecutor, setUp: @escaping @Sendable () -> Void, ready: DispatchSemaphore) {
        self.executor = executor
        self.setUp = setUp
        self.ready = ready
    }
}

/// A result handed from the device thread to a waiting caller (who does not touch it before).
final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}

/// A value moved to another thread while its owner waits: the waiting makes it safe, not the type.
struct UnsafeTransfer<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Holds a non-escaping body for the job that runs it, and lets go of it before the caller resumes.
private final class BodyHolder<T>: @unchecked Sendable {
    private var body: (() throws -> T)?
    init(_ body: @escaping () throws -> T) { self.body = body }
    func take() -> () throws -> T {
        defer { body = nil }
        return body!
    }
}

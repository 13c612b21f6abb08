import Cluster
import Compute
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

// A small actor that exercises the cluster end to end: echo, typed failures, slow calls, descriptor
// passing with shared memory, calls to peers and to the driver, and a nested driver. Tests and
// `colocate bench rpc` spawn it. It is not in the production worker registry: a worker hosts it only
// when started with `DiagnosticActors.workerArguments`.

/// The actors kept out of production workers: a cluster that needs them starts its workers with
/// `workerArguments` (`colocate worker --diagnostic-actors`), which registers them too.
public enum DiagnosticActors {
    /// `ClusterOptions.workerArguments` for workers that also host the diagnostic actors.
    public static let workerArguments = ["worker", "--diagnostic-actors"]

    /// Adds the diagnostic actors to `registry`.
    public static func register(into registry: inout ActorRegistry) {
        registry.register(EchoActor.self)
    }
}

/// Replies with the actor's greeting followed by `text`.
public struct Echo: RemoteCall {
    public typealias Reply = String
    public static let name = "echo.echo"
    public var text: String
    public init(_ text: String) { self.text = text }
}

/// Does nothing, through the actor's one-at-a-time mailbox (the cost of an actor call).
public struct Noop: RemoteCall {
    public typealias Reply = Empty
    public static let name = "echo.noop"
    public init() {}
}

/// Throws `EchoFailure(message)` on the actor.
public struct FailWith: RemoteCall {
    public typealias Reply = Empty
    public static let name = "echo.fail"
    public var message: String
    public init(message: String) { self.message = message }
}

/// The error `FailWith` throws remotely.
public struct EchoFailure: Error, CustomStringConvertible {
    public var message: String
    public var description: String { "EchoFailure: \(message)" }
}

/// Runs in the actor's mailbox — on the actor's own thread when `blocking` (`Handlers.onBlocking`),
/// else in a task — and counts the calls and the most that ever ran at once (`MailboxStats`).
/// With `fail`, throws a `ClusterError` of code `.invalidArgument`.
public struct TouchMailbox: RemoteCall {
    public typealias Reply = Empty
    public static let name = "echo.touchMailbox"
    public var fail: Bool
    public init(fail: Bool = false) { self.fail = fail }
}

/// `TouchMailbox`, answered by a blocking handler.
public struct TouchMailboxBlocking: RemoteCall {
    public typealias Reply = Empty
    public static let name = "echo.touchMailboxBlocking"
    public var fail: Bool
    public init(fail: Bool = false) { self.fail = fail }
}

/// How many `TouchMailbox` calls ran, and the most that ran at once.
public struct MailboxStats: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var calls: Int
        public var mostAtOnce: Int
    }
    public static let name = "echo.mailboxStats"
    public init() {}
}

/// Sleeps, then replies (concurrent, so it does not block other calls).
public struct SleepFor: RemoteCall {
    public typealias Reply = Empty
    public static let name = "echo.sleep"
    public var milliseconds: Int
    public init(milliseconds: Int) { self.milliseconds = milliseconds }
}

/// Writes `text` into new shared memory and replies with its byte count, the memfd attached.
public struct ShareText: RemoteCall {
    public typealias Reply = Int
    public static let name = "echo.shareText"
    public var text: String
    public init(text: String) { self.text = text }
}

/// Writes `text` into new shared memory and lends its memfd through this process's
/// `DescriptorExchange` (as a CUDA allocation shared by file descriptor is lent); replies with the
/// reference's bytes, for another process to fetch.
public struct LendText: RemoteCall {
    public struct Reply: Codable, Sendable {
        public var reference: [UInt8]
        public var byteCount: Int
    }
    public static let name = "echo.lendText"
    public var text: String
    public init(text: String) { self.text = text }
}

/// Stops lending what `LendText` lent.
public struct WithdrawText: RemoteCall {
    public typealias Reply = Empty
    public static let name = "echo.withdrawText"
    public var reference: [UInt8]
    public init(reference: [UInt8]) { self.reference = reference }
}

/// Maps the attached memfd, reads `byteCount` bytes of text, upper-cases them in place, and replies
/// with the text it read.
public struct UppercaseSharedText: RemoteCall {
    public typealias Reply = String
    public static let name = "echo.uppercaseShared"
    public var byteCount: Int
    public init(byteCount: Int) { self.byteCount = byteCount }
}

/// Calls `Echo(text)` on the actor at `address` and replies with its answer.
public struct CallPeer: RemoteCall {
    public typealias Reply = String
    public static let name = "echo.callPeer"
    public var address: ActorAddress
    public var text: String
    public init(address: ActorAddress, text: String) {
        self.address = address
        self.text = text
    }
}

/// Calls `Echo(text)` on the driver (its `ClusterOptions.driverHandlers`) and replies with its answer.
public struct CallDriver: RemoteCall {
    public typealias Reply = String
    public static let name = "echo.callDriver"
    public var text: String
    public init(text: String) { self.text = text }
}

/// Starts a cluster inside this worker (making it a driver itself) with one `EchoActor`, and replies
/// with that child's pid. Used to check that workers die with a driver killed by SIGKILL.
public struct SpawnChild: RemoteCall {
    public typealias Reply = Int32
    public static let name = "echo.spawnChild"
    public init() {}
}

/// Replies with what the actor's `WorkerContext` says.
public struct DescribeContext: RemoteCall {
    public struct Reply: Codable, Sendable, Equatable {
        public var actorName: String
        public var rank: Int
        public var worldSize: Int
        public var groupName: String?
        public var peerNames: [String]
        public var deviceUUID: String?
        public var deviceFraction: Double
        public var bundleIndex: Int?
        public var greeting: String
    }
    public static let name = "echo.describe"
    public init() {}
}

/// The test and benchmark actor.
public final class EchoActor: ClusterActor {
    public struct Config: Codable, Sendable {
        public var greeting: String
        public init(greeting: String = "") { self.greeting = greeting }
        /// Every field is optional, so `spawn(actorType:)` without a config works too.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            greeting = try c.decodeIfPresent(String.self, forKey: .greeting) ?? ""
        }
        private enum CodingKeys: String, CodingKey { case greeting }
    }

    private let config: Config
    private let context: WorkerContext
    private let nested = Mutex<(Cluster, ActorRef)?>(nil)
    private let touches = Mutex((inside: 0, most: 0, calls: 0))

    public init(config: Config, context: WorkerContext) async throws {
        self.config = config
        self.context = context
    }

    private func enterTouch() {
        touches.withLock { t in
            t.inside += 1
            t.calls += 1
            t.most = max(t.most, t.inside)
        }
    }

    private func leaveTouch(failing: Bool) throws {
        touches.withLock { $0.inside -= 1 }
        if failing { throw ClusterError(.invalidArgument, "the touch was told to fail") }
    }

    public func handlers(into handlers: inout Handlers) {
        handlers.on(Echo.self) { call, _ in self.config.greeting + call.text }
        handlers.on(Noop.self) { _, _ in Empty() }
        handlers.on(FailWith.self) { call, _ in throw EchoFailure(message: call.message) }
        handlers.on(TouchMailbox.self) { call, _ in
            self.enterTouch()
            await Task.yield()
            try self.leaveTouch(failing: call.fail)
            return Empty()
        }
        handlers.onBlocking(TouchMailboxBlocking.self) { call, _ in
            self.enterTouch()
            sched_yield()
            try self.leaveTouch(failing: call.fail)
            return Empty()
        }
        handlers.on(MailboxStats.self) { _, _ in
            self.touches.withLock { MailboxStats.Reply(calls: $0.calls, mostAtOnce: $0.most) }
        }
        handlers.on(SleepFor.self, concurrent: true) { call, _ in
            try await Task.sleep(for: .milliseconds(call.milliseconds))
            return Empty()
        }
        handlers.onAttaching(ShareText.self) { call, _ in
            let bytes = Array(call.text.utf8)
            let memory = try HostMemory.allocateShared(byteCount: bytes.count, device: self.context.device ?? .host)
            memory.baseAddress.copyMemory(from: bytes, byteCount: bytes.count)
            guard let fd = memory.sharedFileDescriptor else { throw ClusterError("shared memory without a descriptor") }
            return (bytes.count, [try OwnedFD.duplicating(fd)])
        }
        handlers.on(LendText.self) { call, _ in
            let bytes = Array(call.text.utf8)
            let memory = try HostMemory.allocateShared(byteCount: bytes.count, device: .host)
            memory.baseAddress.copyMemory(from: bytes, byteCount: bytes.count)
            guard let fd = memory.sharedFileDescriptor else { throw ClusterError("shared memory without a descriptor") }
            let reference = try DescriptorExchange.shared().lend(UniqueFileDescriptor(adopting: fcntl(fd, F_DUPFD_CLOEXEC, 0)))
            return LendText.Reply(reference: reference.bytes, byteCount: bytes.count)
        }
        handlers.on(WithdrawText.self) { call, _ in
            try DescriptorExchange.shared().withdraw(DescriptorReference(bytes: call.reference))
            return Empty()
        }
        handlers.on(UppercaseSharedText.self) { call, ctx in
            guard let fd = ctx.attachments.first else { throw ClusterError("no descriptor attached") }
            let memory = try HostMemory.map(fileDescriptor: fd.rawValue, byteCount: call.byteCount, device: .host, keepDescriptor: false)
            let bytes = UnsafeMutableRawBufferPointer(start: memory.baseAddress, count: call.byteCount)
            let text = String(decoding: bytes, as: UTF8.self)
            for i in bytes.indices where bytes[i] >= 0x61 && bytes[i] <= 0x7a { bytes[i] -= 0x20 }
            return text
        }
        handlers.on(CallPeer.self) { call, _ in
            try await self.context.connect(to: call.address).call(Echo(call.text))
        }
        handlers.on(CallDriver.self) { call, _ in
            try await self.context.driver.call(Echo(call.text))
        }
        handlers.on(SpawnChild.self) { _, _ in
            var options = ClusterOptions()
            options.workerArguments = DiagnosticActors.workerArguments
            let cluster = try Cluster.local(devices: .cpu(count: 1), options: options)
            let child = try await cluster.spawn(actorType: EchoActor.typeName, config: Config(), name: "\(self.context.actorName)-child")
            self.nested.withLock { $0 = (cluster, child) }
            return child.pid ?? -1
        }
        handlers.on(DescribeContext.self) { _, _ in
            let c = self.context
            return DescribeContext.Reply(
                actorName: c.actorName, rank: c.rank, worldSize: c.worldSize, groupName: c.groupName,
                peerNames: c.peers.map(\.name), deviceUUID: c.device?.uuid, deviceFraction: c.deviceFraction,
                bundleIndex: c.bundleIndex, greeting: self.config.greeting)
        }
    }
}

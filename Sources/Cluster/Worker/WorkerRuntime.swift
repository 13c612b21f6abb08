#if canImport(Glibc)
import Glibc
#endif
import Compute
import CShims
import Foundation
import Synchronization

/// The worker side: `colocate worker` hands its registry to `WorkerRuntime.run`, which never returns.
///
/// Start-up: die with the driver (parent-death signal, then check the parent is still the driver),
/// listen for peers, connect to the driver and say hello. Then serve: built-in calls (ping, device
/// report, stop, initialize) are answered at once; actor calls go through one mailbox and run one
/// at a time in arrival order (unless their handler is concurrent). When the driver's connection
/// ends, the worker exits.
public enum WorkerRuntime {
    public static func run(registry: ActorRegistry) async -> Never {
        // First thing: if the driver dies from now on, so do we. If it died before this line, our
        // parent is already someone else.
        _ = cshim_set_parent_death_signal(SIGKILL)
        let environment: WorkerEnvironment
        do {
            environment = try WorkerEnvironment()
        } catch {
            fail("colocate worker: \(error)", code: 2)
        }
        guard getppid() == environment.driverPID else { fail("colocate worker: the driver is gone", code: 1) }
        do {
            let worker = try Worker(environment: environment, registry: registry)
            let code = await worker.serve()
            fflush(nil)
            _exit(code)
        } catch {
            fail("colocate worker '\(environment.actorName)': \(error)", code: 1)
        }
    }

    static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        _exit(code)
    }
}

/// One worker process: its connections, its mailbox, its actor once initialized.
private final class Worker: Sendable {
    private struct ActorState: Sendable {
        var handlers: Handlers?
        var instance: (any ClusterActor)?
        var context: WorkerContext?
        var initializing = false
    }

    let environment: WorkerEnvironment
    let registry: ActorRegistry
    private let listenPath: String
    /// With a TCP control plane: the cluster secret and the listener for peers on other hosts.
    private let secret: ClusterSecret?
    private let tcpListener: TCPListener?
    private let peerSink = PeerSink()
    private let listener: Int32
    private let driverConnection: Connection
    private let mailbox: Mailbox
    private let actor = Mutex(ActorState())
    /// Resolved with the exit code when the worker should exit.
    private let stopped = Promise<Int32>()

    init(environment: WorkerEnvironment, registry: ActorRegistry) throws(ClusterError) {
        self.environment = environment
        self.registry = registry
        listenPath = "\(environment.socketDirectory)/a\(environment.actorID).sock"
        listener = try UnixSocket.listen(path: listenPath).take()  // lives as long as the worker
        if let tcp = TCPAddress(environment.driverSocket), environment.driverSocket.hasPrefix(TCPAddress.scheme) {
            // On Ray: the driver is on another host; prove the cluster secret, then forget it so that
            // nothing this worker starts inherits it.
            guard let hex = ProcessInfo.processInfo.environment[ClusterSecret.environmentKey], let secret = ClusterSecret(hex: hex) else {
                throw ClusterError("\(ClusterSecret.environmentKey) is missing or malformed: a worker that dials its driver over TCP needs the cluster secret")
            }
            unsetenv(ClusterSecret.environmentKey)
            self.secret = secret
            driverConnection = try Connection.dialTCP(tcp, secret: secret, hooks: Connection.Hooks(peerName: "driver"))
            // Peers on other hosts cannot reach the Unix socket: listen on TCP too, advertising the
            // address the hosting actor names (Ray's IP of this node), else the driver's host.
            let advertised = ProcessInfo.processInfo.environment[WorkerEnvironment.advertiseHostKey] ?? tcp.host
            tcpListener = try TCPListener(bindHost: tcp.host == "127.0.0.1" ? "127.0.0.1" : "0.0.0.0",
                                          advertisedHost: advertised, secret: secret, onPeer: peerSink.deliver)
        } else {
            let fd = try UnixSocket.connect(path: environment.driverSocket)
            driverConnection = Connection(fd: fd, hooks: Connection.Hooks(peerName: "driver"))
            secret = nil
            tcpListener = nil
        }
        mailbox = Mailbox(actorName: environment.actorName)
    }

    /// Runs until stopped; returns the exit code.
    func serve() async -> Int32 {
        let listener = self.listener
        startThread(name: "colocate.peers") { [self] in
            while true {
                guard let fd = UnixSocket.accept(listener) else { break }
                guard UnixSocket.peerIsSameUser(fd.rawValue) else { continue }  // refused: closed with `fd`
                let pid = (try? UnixSocket.peerCredentials(fd.rawValue).pid).map(String.init) ?? "?"
                serve(Connection(fd: fd, hooks: Connection.Hooks(peerName: "peer pid \(pid)")))
            }
        }
        peerSink.set { [self] fd in
            serve(Connection(fd: UniqueFileDescriptor(adopting: fd), hooks: Connection.Hooks(peerName: "TCP peer"), carriesDescriptors: false))
        }
        // The driver going away ends the worker, whatever it was doing.
        driverConnection.updateHooks { h in
            h.onClose = { [stopped] in stopped.succeed(0) }
        }
        serve(driverConnection)
        do {
            let hello = WorkerHello(actorID: environment.actorID, pid: getpid(), listenPath: listenPath,
                                    listenTCP: tcpListener?.address.url, host: tcpListener == nil ? nil : WorkerEnvironment.hostIdentity)
            _ = try await driverConnection.call(name: WorkerHello.name, payload: try WireCodec.encodePayload(hello))
        } catch {
            FileHandle.standardError.write(Data("colocate worker '\(environment.actorName)': driver refused hello: \(error)\n".utf8))
            return 1
        }
        return (try? await stopped.value()) ?? 1
    }

    /// Routes the calls arriving on `connection` and starts reading it.
    func serve(_ connection: Connection) {
        connection.updateHooks { h in
            h.onCall = { [weak self] frame, connection in self?.received(frame, on: connection) }
        }
        connection.start()
    }

    /// Runs on a connection's reader thread, which must never block on a write (two readers each
    /// blocked writing to the other would deadlock): every reply is sent from a task.
    private func received(_ frame: Frame, on connection: Connection) {
        switch frame.name {
        case Ping.name:
            Task { reply(Empty(), to: frame, on: connection) }
        case ReportDevice.name:
            Task {
                let report = ReportDevice.Reply(
                    actor: environment.actorName, pid: getpid(), uuid: environment.device?.uuid, device: environment.device,
                    deviceFraction: environment.deviceFraction,
                    cudaVisibleDevices: ProcessInfo.processInfo.environment["CUDA_VISIBLE_DEVICES"])
                reply(report, to: frame, on: connection)
            }
        case StopWorker.name:
            Task {
                reply(Empty(), to: frame, on: connection)
                stopped.succeed(0)
            }
        case InitializeActor.name:
            Task { await initialize(frame, on: connection) }
        case ControlPlaneAllReduce.callName:
            AllReduceHub.shared.received(frame, on: connection)
        case ControlPlaneAllReduce.abortName:
            AllReduceHub.shared.receivedAbort(frame, on: connection)
        case AllReduceProbe.name:
            Task { await probeAllReduce(frame, on: connection) }
        default:
            mailbox.submit(Mailbox.Job(frame: frame, connection: connection))
        }
    }

    private func probeAllReduce(_ frame: Frame, on connection: Connection) async {
        do {
            let probe = try WireCodec.decode(AllReduceProbe.self, from: frame.payload, what: "all-reduce probe")
            guard let context = actor.withLock({ $0.context }) else { throw ClusterError("actor '\(environment.actorName)' is not initialized") }
            let allReduce = ControlPlaneAllReduce(context: context, name: "probe")
            let values = [Float](repeating: Float(context.rank + 1), count: max(1, probe.floats))
            var last: [Float] = []
            let start = ContinuousClock.now
            for _ in 0..<max(1, probe.iterations) { last = try await allReduce.sum(values) }
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            reply(AllReduceProbe.Reply(seconds: seconds, first: last.first ?? 0, count: last.count), to: frame, on: connection)
        } catch {
            connection.replyFailure(to: frame.requestID, error: error)
        }
    }

    private func reply<T: Encodable>(_ value: T, to frame: Frame, on connection: Connection) {
        do {
            connection.reply(to: frame.requestID, payload: try WireCodec.encodePayload(value))
        } catch {
            connection.replyFailure(to: frame.requestID, error: error)
        }
    }

    private func initialize(_ frame: Frame, on connection: Connection) async {
        do {
            let call = try WireCodec.decode(InitializeActor.self, from: frame.payload, what: "initialize")
            let first = actor.withLock { a in
                defer { a.initializing = true }
                return !a.initializing
            }
            guard first else { throw ClusterError("actor '\(environment.actorName)' is already initialized") }
            guard let factory = registry.factories[call.actorType] else {
                throw ClusterError(.invalidArgument, "unknown actor type '\(call.actorType)'; this worker hosts: \(registry.typeNames.joined(separator: ", "))")
            }
            let driver = ActorRef(name: "driver", address: ActorAddress(name: "driver", path: environment.driverSocket),
                                  pid: environment.driverPID, device: nil, deviceFraction: 0,
                                  connection: driverConnection, control: nil)
            let context = WorkerContext(environment: environment, actorType: call.actorType, rank: call.rank,
                                        worldSize: call.worldSize, groupName: call.groupName, peers: call.peers,
                                        driver: driver, secret: secret, serve: { [weak self] c in self?.serve(c) })
            let (instance, handlers) = try await factory(Array(call.config.utf8), context)
            actor.withLock { a in
                a.handlers = handlers
                a.instance = instance
                a.context = context
            }
            mailbox.open(with: handlers)
            connection.reply(to: frame.requestID, payload: try WireCodec.encodePayload(Empty()))
        } catch {
            connection.replyFailure(to: frame.requestID, error: error)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Compute
import Foundation
import Synchronization

/// A single-host cluster: the node's devices and CPUs, placement groups over them, and actors, each in
/// a worker process of its own, reached by typed calls over Unix sockets.
///
///     let cluster = try Cluster.local(devices: .cpu(count: 4))
///     let pg = try cluster.placementGroup(Array(repeating: ResourceBundle(gpu: 1), count: 4), strategy: .pack)
///     try await pg.ready()
///     let trainer = try await cluster.spawn(actorType: "Trainer", config: config,
///         placement: .init(group: pg, bundleIndex: 0, deviceFraction: 0.4), name: "trainer-0")
///     let device = try await trainer.call(ReportDevice())
///     await pg.remove()
///     await cluster.shutdown()
///
/// Workers die with the driver (parent-death signal), even after `kill -9` of the driver.
public final class Cluster: Sendable {
    /// The node's devices, ordinals 0..<n.
    public let devices: [Device]
    public let options: ClusterOptions
    /// The node's CPU cores available to bundles.
    public let cpus: Int

    let directory: SocketDirectory
    let driverSocketPath: String
    private let listener: Int32
    private let listenerShutDown = Atomic(false)
    let changes = ChangeSignal()
    private let state: Mutex<State>
    /// Set for a cluster on Ray (`Cluster.ray`): placement and worker hosting go through Ray.
    let ray: RayBackend?
    /// The TCP control plane, when `options.controlPlane` is `.tcp`.
    let tcp: (listener: TCPListener, secret: ClusterSecret)?
    private let tcpSink = PeerSink()

    private struct HelloInfo: Sendable {
        var connection: Connection
        var listenPath: String
        var listenTCP: String?
        var host: String?
    }

    private struct ActorRecord: Sendable {
        var name: String
        var process: WorkerProcess
        var hello: Promise<HelloInfo>
        var connection: Connection?
        var group: Int?
        var bundle: Int?
    }

    private struct State: Sendable {
        var ledger: ResourceLedger
        var nextActorID = 0
        var actors: [Int: ActorRecord] = [:]
        /// Actors being spawned whose record is not registered yet, and the hello each may already
        /// have sent (a fast worker can connect before `posix_spawn`'s caller resumes).
        var starting: [Int: EarlyHello?] = [:]
        var shutDown = false
    }

    private struct EarlyHello: Sendable {
        var hello: WorkerHello
        var frame: Frame
        var connection: Connection
        /// nil for a TCP peer: it proved the cluster secret, and its hello names its pid.
        var peerPID: pid_t?
    }

    /// A cluster on this host with the given devices.
    public static func local(devices spec: DeviceSpec = .cpu(count: 1), options: ClusterOptions = ClusterOptions()) throws -> Cluster {
        try Cluster(devices: try spec.devices(cudaProvider: options.cudaDeviceProvider), options: options)
    }

    /// A cluster on this host with exactly these devices.
    public convenience init(devices: [Device], options: ClusterOptions = ClusterOptions()) throws(ClusterError) {
        try self.init(devices: devices, options: options, ray: nil)
    }

    init(devices: [Device], options: ClusterOptions, ray: RayBackend?) throws(ClusterError) {
        self.ray = ray
        let cpus = options.cpus ?? ProcessInfo.processInfo.activeProcessorCount
        guard cpus >= 0 else { throw ClusterError("a node cannot offer \(cpus) CPUs") }
        self.devices = devices
        self.options = options
        self.cpus = cpus
        directory = try SocketDirectory.create(parent: options.socketParentDirectory)
        driverSocketPath = directory.path + "/driver.sock"
        do {
            listener = try UnixSocket.listen(path: driverSocketPath).take()  // closed by the accept loop
        } catch {
            directory.remove()
            throw error
        }
        if case .tcp(let bindHost, let advertisedHost) = options.controlPlane {
            do {
                let secret = try ClusterSecret.random()
                let tcpListener = try TCPListener(bindHost: bindHost, advertisedHost: advertisedHost, secret: secret,
                                                  onPeer: tcpSink.deliver)
                tcp = (tcpListener, secret)
            } catch {
                close(listener)
                directory.remove()
                throw error
            }
        } else {
            tcp = nil
        }
        state = Mutex(State(ledger: ResourceLedger(devices: devices, cpus: cpus)))
        let listener = self.listener
        startThread(name: "colocate.accept") { [weak self] in
            while true {
                guard let fd = UnixSocket.accept(listener) else { break }
                guard let cluster = self else { break }  // the connection closes with `fd`
                cluster.accepted(fd)
            }
            close(listener)
        }
        tcpSink.set { [weak self] fd in
            guard let self else {
                close(fd)
                return
            }
            self.acceptedTCP(fd)
        }
    }

    deinit {
        // Dropped without `shutdown()`: kill what is left rather than leak processes and sockets.
        let s = state.withLock { $0 }
        if !s.shutDown {
            for record in s.actors.values where !record.process.hasExited { record.process.signalGroup(SIGKILL) }
            directory.remove()
        }
        shutDownListener()
        ray?.helper.close()
        tcp?.listener.shutDown()
    }

    /// The private directory of this cluster's sockets (0700).
    public var socketDirectoryPath: String { directory.path }

    // MARK: Placement groups

    /// Reserves bundles (Ray's `placement_group`). Infeasible groups — more GPUs or CPUs than the node
    /// has, STRICT_SPREAD over more than one bundle — throw; feasible ones that do not fit yet stay
    /// pending until others are removed (`ready()` / `wait(timeout:)`).
    public func placementGroup(_ bundles: [ResourceBundle], strategy: PlacementStrategy = .pack, name: String? = nil) throws(ClusterError) -> PlacementGroup {
        if let ray {
            guard !state.withLock({ $0.shutDown }) else { throw ClusterError("the cluster is shut down") }
            let (id, groupName) = try ray.createGroup(name: name, bundles: bundles, strategy: strategy, changes: changes)
            return PlacementGroup(name: groupName, bundles: bundles, strategy: strategy, id: id, cluster: self)
        }
        let (id, groupName) = try state.withLock { (s) throws(ClusterError) -> (Int, String) in
            guard !s.shutDown else { throw ClusterError("the cluster is shut down") }
            let groupName = name ?? "pg-\(s.ledger.groups.count)"
            return (try s.ledger.createGroup(name: groupName, bundles: bundles, strategy: strategy), groupName)
        }
        changes.notifyAll()
        return PlacementGroup(name: groupName, bundles: bundles, strategy: strategy, id: id, cluster: self)
    }

    func groupState(_ id: Int) -> ResourceLedger.GroupState {
        if let ray {
            switch ray.group(id)?.state {
            case .created?: return .created
            case .pending?: return .pending
            default: return .removed
            }
        }
        return state.withLock { $0.ledger.state(ofGroup: id) }
    }

    func bundleDevices(ofGroup id: Int) -> [Device?] {
        if let ray { return ray.group(id)?.devices ?? [] }
        return state.withLock { $0.ledger.bundleDevices(ofGroup: id) }
    }

    /// The Ray node of each bundle (nil on a local cluster, or before the group is ready).
    func bundleNodes(ofGroup id: Int) -> [String]? { ray?.group(id)?.nodes }

    /// True once the group is placed; false at the deadline; throws if removed or shut down.
    func waitForGroup(_ id: Int, name: String, deadline: ContinuousClock.Instant?) async throws(ClusterError) -> Bool {
        while true {
            let seen = changes.generation
            let down = state.withLock { $0.shutDown }
            if let ray, case .failed(let why)? = ray.group(id)?.state { throw ClusterError(.infeasible, why) }
            switch groupState(id) {
            case .created: return true
            case .removing, .removed: throw ClusterError("placement group '\(name)' was removed")
            case .pending: break
            }
            if down { throw ClusterError("the cluster is shut down") }
            if let deadline, ContinuousClock.now >= deadline { return false }
            await changes.wait(after: seen, until: deadline)
        }
    }

    func removeGroup(_ id: Int) async {
        if let ray {
            let holders = state.withLock { s in s.actors.filter { $0.value.group == id }.map(\.key) }
            await withTaskGroup(of: Void.self) { group in
                for actor in holders { group.addTask { await self.stopActor(actor) } }
            }
            await ray.removeGroup(id)
            changes.notifyAll()
            return
        }
        let holders = state.withLock { $0.ledger.beginRemoval(id) }
        await withTaskGroup(of: Void.self) { group in
            for actor in holders { group.addTask { await self.stopActor(actor) } }
        }
        state.withLock { _ = $0.ledger.removeGroup(id) }
        changes.notifyAll()
    }

    // MARK: Actors

    /// Starts an actor of a type registered in the worker executable, in a process of its own, and
    /// constructs it with `config`. With a placement, the actor gets its share of the bundle's device
    /// (`COLOCATE_DEVICE`, `COLOCATE_DEVICE_FRACTION`, and `CUDA_VISIBLE_DEVICES` for a GPU).
    public func spawn<Config: Encodable & Sendable>(
        actorType: String, config: Config, placement: ActorPlacement? = nil, name: String? = nil
    ) async throws -> ActorRef {
        let encoded = try WireCodec.encode(config)
        let worker = try await launch(actorType: actorType, name: name, placement: placement)
        do {
            try await initialize(worker, actorType: actorType, config: encoded, rank: 0, worldSize: 1, groupName: nil, peers: [worker.address])
        } catch {
            await stopActor(worker.id)
            throw error
        }
        return reference(to: worker)
    }

    /// `spawn` for actor types without a config.
    public func spawn(actorType: String, placement: ActorPlacement? = nil, name: String? = nil) async throws -> ActorRef {
        try await spawn(actorType: actorType, config: Empty(), placement: placement, name: name)
    }

    /// Starts one process per rank (e.g. per tensor-parallel rank), rank i at `placements[i]` with
    /// `configs[i]`. Every rank learns its rank, the world size and the addresses of all ranks before
    /// its actor is constructed. If any rank fails to start, none is left running.
    public func spawnGroup<Config: Encodable & Sendable>(
        actorType: String, configs: [Config], placements: [ActorPlacement?], name: String
    ) async throws -> ActorGroup {
        guard !configs.isEmpty, configs.count == placements.count else {
            throw ClusterError("group '\(name)' needs one config and one placement per rank; got \(configs.count) configs and \(placements.count) placements")
        }
        let encoded = try configs.map { (c) throws(ClusterError) in try WireCodec.encode(c) }
        // Start every rank's process; keep whichever started, to stop them if another failed.
        let outcomes = await withTaskGroup(of: (Int, Result<LaunchedWorker, any Error>).self) { group in
            for (rank, placement) in placements.enumerated() {
                group.addTask {
                    do {
                        return (rank, .success(try await self.launch(actorType: actorType, name: "\(name)-rank\(rank)", placement: placement)))
                    } catch {
                        return (rank, .failure(error))
                    }
                }
            }
            var outcomes = [Int: Result<LaunchedWorker, any Error>]()
            for await (rank, outcome) in group { outcomes[rank] = outcome }
            return outcomes
        }
        let started = outcomes.values.compactMap { try? $0.get() }
        do {
            let workers = try (0..<placements.count).map { try outcomes[$0]!.get() }
            let peers = workers.map(\.address)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (rank, w) in workers.enumerated() {
                    group.addTask {
                        try await self.initialize(w, actorType: actorType, config: encoded[rank], rank: rank,
                                                  worldSize: workers.count, groupName: name, peers: peers)
                    }
                }
                try await group.waitForAll()
            }
            return ActorGroup(name: name, ranks: workers.map { reference(to: $0) })
        } catch {
            await withTaskGroup(of: Void.self) { group in
                for w in started { group.addTask { await self.stopActor(w.id) } }
            }
            throw error
        }
    }

    /// `spawnGroup` with the same config for every rank.
    public func spawnGroup<Config: Encodable & Sendable>(
        actorType: String, config: Config, placements: [ActorPlacement?], name: String
    ) async throws -> ActorGroup {
        try await spawnGroup(actorType: actorType, configs: Array(repeating: config, count: placements.count),
                             placements: placements, name: name)
    }

    /// Stops every actor, frees every group, removes the socket directory. Idempotent.
    public func shutdown() async {
        let (records, groups, already) = state.withLock { s in
            defer { s.shutDown = true }
            return (s.actors, Array(s.ledger.groups.keys), s.shutDown)
        }
        guard !already else { return }
        let down = ClusterError("the cluster is shut down")
        for r in records.values { r.hello.fail(down) }
        await withTaskGroup(of: Void.self) { group in
            for id in records.keys { group.addTask { await self.stopActor(id) } }
        }
        state.withLock { s in for g in groups { _ = s.ledger.removeGroup(g) } }
        await ray?.shutdown()
        tcp?.listener.shutDown()
        changes.notifyAll()
        shutDownListener()
        directory.remove()
    }

    // MARK: Starting workers

    private struct LaunchedWorker: Sendable {
        var id: Int
        var name: String
        var process: WorkerProcess
        var connection: Connection
        var address: ActorAddress
        var device: Device?
        var share: DeviceShare
    }

    private func launch(actorType: String, name: String?, placement: ActorPlacement?) async throws -> LaunchedWorker {
        let share = try placement?.share() ?? .zero
        let id = try state.withLock { (s) throws(ClusterError) -> Int in
            guard !s.shutDown else { throw ClusterError("the cluster is shut down") }
            s.nextActorID += 1
            return s.nextActorID
        }
        let actorName = name ?? "\(actorType)-\(id)"
        var device: Device?
        if let placement {
            guard placement.group.cluster === self else {
                throw ClusterError("placement group '\(placement.group.name)' belongs to another cluster")
            }
            // On Ray, Ray accounts for the shares (the hosting actor asks for them).
            if ray == nil { device = try await reserveShare(placement, share: share, holderID: id, holderName: actorName) }
        }
        let release: @Sendable () -> Void = { [self] in
            if let placement, ray == nil {
                state.withLock { $0.ledger.releaseShare(group: placement.group.id, bundle: placement.bundleIndex, holderID: id) }
                changes.notifyAll()
            }
        }

        var environment = ProcessInfo.processInfo.environment
        for key in WorkerEnvironment.allKeys { environment[key] = nil }
        environment.merge(options.environment) { _, new in new }
        if devices.contains(where: { $0.kind == .cuda }) && device == nil { environment["CUDA_VISIBLE_DEVICES"] = "" }
        do {
            environment.merge(try WorkerEnvironment.variables(
                driverSocket: tcp?.listener.address.url ?? driverSocketPath, socketDirectory: directory.path, actorID: id, actorName: actorName,
                device: device, share: share, bundleIndex: placement?.bundleIndex)) { _, new in new }
        } catch {
            release()
            throw error
        }
        if let tcp { environment[ClusterSecret.environmentKey] = tcp.secret.hex }

        state.withLock { $0.starting[id] = .some(nil) }
        let process: WorkerProcess
        do {
            if let ray {
                let spawned = try await ray.spawn(
                    actorID: id, actorName: actorName, group: placement?.group.id, bundleIndex: placement?.bundleIndex, share: share,
                    executable: ray.options.workerExecutable ?? Cluster.resolvedExecutable(options.workerExecutable),
                    arguments: options.workerArguments,
                    environment: try rayWorkerEnvironment(actorID: id, actorName: actorName, share: share, bundleIndex: placement?.bundleIndex),
                    secret: tcp!.secret, timeout: options.workerStartTimeout)
                process = spawned.process
                device = spawned.device
            } else {
                process = try await WorkerProcess.spawn(executable: options.workerExecutable, arguments: options.workerArguments, environment: environment)
            }
        } catch {
            state.withLock { _ = $0.starting.removeValue(forKey: id) }
            release()
            throw error
        }
        let hello = Promise<HelloInfo>()
        let (stillUp, early) = state.withLock { s in
            s.actors[id] = ActorRecord(name: actorName, process: process, hello: hello,
                                       group: placement?.group.id, bundle: placement?.bundleIndex)
            return (!s.shutDown, s.starting.removeValue(forKey: id) ?? nil)
        }
        if let early { acceptHello(early) }
        // From here on the reaper releases the share, whatever happens.
        process.startReaper { [weak self] termination in self?.workerExited(id, termination) }
        guard stillUp else {
            await stopActor(id)
            throw ClusterError("the cluster is shut down")
        }

        let info: HelloInfo
        switch await hello.value(timeout: options.workerStartTimeout) {
        case .success(let i):
            info = i
        case .failure(let error):
            await stopActor(id)
            throw error
        case nil:
            await stopActor(id)
            throw ClusterError("actor '\(actorName)' (pid \(process.pid)) did not start within \(options.workerStartTimeout); is \(options.workerExecutable) a colocate executable?")
        }
        return LaunchedWorker(id: id, name: actorName, process: process, connection: info.connection,
                              address: ActorAddress(name: actorName, path: info.listenPath, tcp: info.listenTCP, host: info.host), device: device, share: share)
    }

    private func reserveShare(_ placement: ActorPlacement, share: DeviceShare, holderID: Int, holderName: String) async throws(ClusterError) -> Device? {
        let deadline = placement.waitTimeout.map { ContinuousClock.now + $0 }
        while true {
            let seen = changes.generation
            let outcome = try state.withLock { (s) throws(ClusterError) -> ResourceLedger.ShareReservation in
                guard !s.shutDown else { throw ClusterError("the cluster is shut down") }
                return try s.ledger.reserveShare(group: placement.group.id, bundle: placement.bundleIndex, share: share,
                                                 holderID: holderID, holderName: holderName)
            }
            switch outcome {
            case .granted(let device):
                return device
            case .busy(let why):
                guard let deadline, let timeout = placement.waitTimeout else { throw ClusterError(why) }
                guard ContinuousClock.now < deadline else { throw ClusterError("\(why) (waited \(timeout))") }
                await changes.wait(after: seen, until: deadline)
            }
        }
    }

    private func initialize(_ w: LaunchedWorker, actorType: String, config: [UInt8], rank: Int, worldSize: Int,
                            groupName: String?, peers: [ActorAddress]) async throws {
        let call = InitializeActor(actorType: actorType, config: String(decoding: config, as: UTF8.self), rank: rank, worldSize: worldSize,
                                   groupName: groupName, peers: peers)
        _ = try await w.connection.call(name: InitializeActor.name, payload: try WireCodec.encodePayload(call))
    }

    private func reference(to w: LaunchedWorker) -> ActorRef {
        let id = w.id
        let process = w.process
        return ActorRef(
            name: w.name, address: w.address, pid: process.pid, device: w.device, deviceFraction: w.share.fraction,
            connection: w.connection,
            control: ActorRef.Control(
                stop: { [weak self] in await self?.stopActor(id) },
                kill: { if !process.hasExited { process.signalGroup(SIGKILL) } },
                termination: { try? process.exit.peek?.get() }),
            callTimeout: options.callTimeout)
    }

    // MARK: Stopping workers

    /// Asks the worker to exit, kills it after the grace period, and waits until it is reaped.
    private func stopActor(_ id: Int) async {
        guard let record = state.withLock({ $0.actors[id] }) else { return }
        let process = record.process
        if let connection = record.connection, !process.hasExited {
            // Its reply races its exit; either is fine, and the task ends when the connection does.
            Task { _ = try? await connection.call(name: StopWorker.name, payload: try WireCodec.encodePayload(StopWorker())) }
        }
        if await process.exit.value(timeout: record.connection == nil ? .zero : options.stopGracePeriod) == nil {
            process.signalGroup(SIGKILL)
            _ = await process.exit.value(timeout: .seconds(10))
        }
        if case .success(let termination)? = process.exit.peek { workerExited(id, termination) }
    }

    /// The reaper saw the worker exit: release its share, fail its start if pending, close its
    /// connection (pending calls then fail naming the exit status). Idempotent.
    private func workerExited(_ id: Int, _ termination: Termination) {
        let record = state.withLock { s -> ActorRecord? in
            guard let r = s.actors.removeValue(forKey: id) else { return nil }
            if let g = r.group, let b = r.bundle { s.ledger.releaseShare(group: g, bundle: b, holderID: id) }
            return r
        }
        guard let record else { return }
        record.hello.fail(ActorDiedError(actor: record.name, pid: record.process.pid, termination: termination))
        record.connection?.close()
        changes.notifyAll()
    }

    // MARK: Driver socket

    private func accepted(_ fd: consuming UniqueFileDescriptor) {
        // Another user's process, or one whose credentials cannot be read: refused (closed with `fd`).
        guard UnixSocket.peerIsSameUser(fd.rawValue), let credentials = try? UnixSocket.peerCredentials(fd.rawValue) else { return }
        let peerPID = credentials.pid
        let hooks = Connection.Hooks(peerName: "worker pid \(peerPID)", onCall: { [weak self] frame, connection in
            guard let self else { return connection.replyFailure(to: frame.requestID, message: "the cluster is gone") }
            self.handleWorkerCall(frame, connection, peerPID: peerPID)
        })
        Connection(fd: fd, hooks: hooks).start()
    }

    private func handleWorkerCall(_ frame: Frame, _ connection: Connection, peerPID: pid_t?) {
        guard frame.name == WorkerHello.name else {
            // Replies are written from tasks, never from the reader thread (see `Worker.received`).
            guard let entry = options.driverHandlers.entries[frame.name] else {
                let known = options.driverHandlers.names.joined(separator: ", ")
                Task { connection.replyFailure(to: frame.requestID, error: ClusterError(.invalidArgument, "the driver has no handler for '\(frame.name)'; it handles: [\(known)]")) }
                return
            }
            Task { await Handlers.execute(entry, frame: frame, on: connection) }
            return
        }
        guard let hello = try? WireCodec.decode(WorkerHello.self, from: frame.payload, what: "hello") else {
            return refuseHello(frame, connection, peerPID: peerPID)
        }
        let early = EarlyHello(hello: hello, frame: frame, connection: connection, peerPID: peerPID)
        let registered = state.withLock { s -> Bool? in
            if s.actors[hello.actorID] != nil { return true }
            guard case .some(.none) = s.starting[hello.actorID] else { return nil }
            s.starting[hello.actorID] = .some(early)
            return false
        }
        switch registered {
        case true?: acceptHello(early)
        case false?: break   // `launch` handles it once the record exists
        case nil: refuseHello(frame, connection, peerPID: peerPID)
        }
    }

    /// Binds a worker's connection to its record, after checking it is the process we started.
    private func acceptHello(_ early: EarlyHello) {
        let (hello, frame, connection, peerPID) = (early.hello, early.frame, early.connection, early.peerPID)
        guard let record = state.withLock({ $0.actors[hello.actorID] }),
              record.connection == nil, record.process.pid == (peerPID ?? hello.pid), hello.pid == (peerPID ?? hello.pid) else {
            return refuseHello(frame, connection, peerPID: peerPID)
        }
        let name = record.name
        let process = record.process
        connection.updateHooks { h in
            h.peerName = name
            h.closeReason = {
                // EOF usually comes moments before the exit status: give the reaper a moment so the
                // error can say how the process ended.
                let termination = try? process.exit.waitBlocking(timeout: .milliseconds(1500))?.get()
                return ActorDiedError(actor: name, pid: process.pid, termination: termination)
            }
        }
        state.withLock { $0.actors[hello.actorID]?.connection = connection }
        connection.reply(to: frame.requestID, payload: (try? WireCodec.encodePayload(Empty())) ?? [])
        record.hello.succeed(HelloInfo(connection: connection, listenPath: hello.listenPath, listenTCP: hello.listenTCP, host: hello.host))
    }

    /// Not a worker this driver started (or a second hello): refuse and hang up.
    private func refuseHello(_ frame: Frame, _ connection: Connection, peerPID: pid_t?) {
        connection.replyFailure(to: frame.requestID, message: "unexpected worker (pid \(peerPID.map(String.init) ?? "?"))")
        connection.close()
    }

    /// A worker on Ray dialed in over TCP and proved the cluster secret.
    private func acceptedTCP(_ fd: Int32) {
        let hooks = Connection.Hooks(peerName: "TCP worker", onCall: { [weak self] frame, connection in
            guard let self else { return connection.replyFailure(to: frame.requestID, message: "the cluster is gone") }
            self.handleWorkerCall(frame, connection, peerPID: nil)
        })
        Connection(fd: UniqueFileDescriptor(adopting: fd), hooks: hooks, carriesDescriptors: false).start()
    }

    private func shutDownListener() {
        if !listenerShutDown.exchange(true, ordering: .relaxed) {
            // Wakes the accept thread, which closes the descriptor.
            _ = Glibc.shutdown(listener, Int32(SHUT_RDWR))
        }
    }
}

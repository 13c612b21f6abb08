#if canImport(Glibc)
import Glibc
#endif

/// Selects the control plane's earlier path, for side-by-side measurements: with
/// `COLOCATE_RPC_LEGACY=1` payloads are sent as JSON, every call with a deadline arms a timer task of
/// its own, and blocking handlers (`Handlers.onBlocking`) run on a new thread per call awaited from the
/// cooperative pool — as calls ran before the binary codec, the shared deadline thread and the actor
/// thread. Read once per process; workers inherit it from the driver. Both paths read both codecs.
enum RPCPath {
    static let environmentKey = "COLOCATE_RPC_LEGACY"
    static let legacy: Bool = getenv(environmentKey).map { String(cString: $0) == "1" } ?? false
}

import Foundation
import Testing

/// The full-system push sync on both control-plane paths: this one (binary payloads, one deadline
/// thread, blocking handlers on the actor's thread) and the earlier one `COLOCATE_RPC_LEGACY=1` selects
/// for comparisons (JSON, a timer task per call, a thread per blocking call). `bench sync` checks that
/// every engine rank holds its trainer's weights afterwards; no timing is asserted.
@Suite struct ControlPlaneCLITests {
    @Test(arguments: [false, true])
    func pushSyncRunsOnEitherPath(legacy: Bool) throws {
        var env = ProcessInfo.processInfo.environment
        env["COLOCATE_RPC_LEGACY"] = legacy ? "1" : nil
        let run = try runColocate(["bench", "sync", "--device", "cpu", "--devices", "cpu:1", "--method", "push", "--tp", "1",
                                   "--preset", "opt-tiny", "--iterations", "3"], env: env)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("bench sync (cpu, push)") && run.stdout.contains("medians per call: call → trainer's handler"), "\(run.stdout)")
    }
}

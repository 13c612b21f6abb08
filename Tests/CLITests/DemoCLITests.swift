import Foundation
import Models
import Testing

/// `colocate demo` as a user runs it, on a tiny model, for every layout the issue names.
@Suite struct DemoCLITests {
    @Test(arguments: [(4, 2), (4, 1), (2, 2), (2, 1)])
    func demoPassesAndReportsColocation(devices: Int, tp: Int) throws {
        let model = try EngineSystemTests.model("opt-tiny")
        let r = try runColocate(["demo", "--model", model, "--devices", "cpu:\(devices):1GiB", "--tp", "\(tp)", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(report["passed"] as? Bool == true)
        let actors = try #require(report["actors"] as? [[String: Any]])
        // One trainer per device plus one engine rank per device.
        #expect(actors.count == 2 * devices)
        for bundle in 0..<devices {
            let uuids = Set(actors.filter { $0["bundle"] as? Int == bundle }.compactMap { $0["deviceUUID"] as? String })
            #expect(uuids.count == 1, "bundle \(bundle) actors must share one device")
        }
        let steps = try #require(report["steps"] as? [[String: Any]])
        #expect(steps.count == 6)
        let before = try #require(report["before"] as? [[String: Any]]), after = try #require(report["after"] as? [[String: Any]])
        #expect(before.count == devices / tp && after.count == devices / tp)
        #expect(after.allSatisfy { ($0["tokenIds"] as? [Int])?.allSatisfy { $0 == 0 } == true }, "zero weights give all-zero logits → token 0")
    }

    @Test func pushSyncPassesTheSameChecks() throws {
        let model = try EngineSystemTests.model("opt-tiny")
        let r = try runColocate(["demo", "--model", model, "--devices", "cpu:4:1GiB", "--tp", "2", "--sync", "push", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(report["passed"] as? Bool == true)
        let steps = try #require(report["steps"] as? [[String: Any]])
        #expect((steps[4]["name"] as? String)?.contains("each trainer writes the shards") == true)
        #expect((report["syncedBytesPerRank"] as? [Int])?.count == 4)
        let after = try #require(report["after"] as? [[String: Any]])
        #expect(after.allSatisfy { ($0["tokenIds"] as? [Int])?.allSatisfy { $0 == 0 } == true })
    }

    @Test func infeasibleLayoutIsRefusedWithTheReason() throws {
        let model = try EngineSystemTests.model("opt-tiny")
        var r = try runColocate(["demo", "--model", model, "--devices", "cpu:3", "--tp", "2"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("does not divide"), "\(r.stderr)")
        r = try runColocate(["demo", "--model", try colocateFixtures() + "/opt-tiny"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("no tokenizer.json"), "\(r.stderr)")
        r = try runColocate(["demo", "--model", model, "--trainer-fraction", "0.7", "--worker-fraction", "0.4"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("infeasible"), "\(r.stderr)")
    }

    @Test func humanReadableOutputShowsEveryStep() throws {
        let model = try EngineSystemTests.model("opt-tiny")
        let r = try runColocate(["demo", "--model", model, "--devices", "cpu:2:1GiB"])
        #expect(r.status == 0, "\(r.stderr)")
        for step in ["1. ", "2. ", "3. ", "4. ", "5. ", "PASS"] { #expect(r.stdout.contains(step)) }
    }
}

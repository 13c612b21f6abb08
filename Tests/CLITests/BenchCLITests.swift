import Foundation
import Testing

/// `colocate bench decode --variable-lengths` and `colocate bench cold-start` on CPU with tiny presets:
/// they run, report what they measured, and refuse bad flags with one line. No timing is asserted.
@Suite struct BenchCLITests {
    /// The rows of the variable-length table: batch → (requests, new tokens, ratio to fixed).
    func variableRows(_ stdout: String) -> [Int: (requests: Int, tokens: Int, ratio: Double)] {
        guard let start = stdout.range(of: "variable lengths:") else { return [:] }
        var rows: [Int: (Int, Int, Double)] = [:]
        for line in stdout[start.upperBound...].split(separator: "\n") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count == 7, let b = Int(cells[0]), let r = Int(cells[1]), let t = Int(cells[2]), let ratio = Double(cells[6]) else { continue }
            rows[b] = (r, t, ratio)
        }
        return rows
    }

    @Test func decodeWithVariableLengthsRunsBesideTheFixedFigure() throws {
        let args = ["bench", "decode", "--preset", "opt-tiny", "--batch", "2,3", "--prompt-tokens", "8", "--new-tokens", "16",
                    "--variable-lengths", "--requests", "7", "--seed", "5"]
        let run = try runColocate(args)
        #expect(run.status == 0, "\(run.stderr)")
        // opt-tiny has 128 positions: the default 16-512 range is cut to what a prompt of 8 leaves.
        #expect(run.stdout.contains("uniform in 16...120 (clamped from 16...512"), "\(run.stdout)")
        let rows = variableRows(run.stdout)
        #expect(Set(rows.keys) == [2, 3], "\(run.stdout)")
        for (_, row) in rows {
            #expect(row.requests == 7)
            // Every request got between 16 and 120 new tokens (the benchmark checks the exact sum itself).
            #expect((7 * 16...7 * 120).contains(row.tokens))
            #expect(row.ratio.isFinite && row.ratio > 0)
        }
        // Seeded: the same lengths again.
        let again = try runColocate(args)
        #expect(variableRows(again.stdout).mapValues(\.tokens) == rows.mapValues(\.tokens))
    }

    @Test(arguments: [
        (["--variable-lengths", "--lengths", "40-4"], "--lengths must be MIN-MAX"),
        (["--variable-lengths", "--lengths", "x"], "--lengths must be MIN-MAX"),
        (["--requests", "3"], "--requests needs --variable-lengths"),
        (["--variable-lengths", "--requests", "0"], "--requests must be positive"),
        (["--variable-lengths", "--prompt-tokens", "120", "--new-tokens", "8"], "leaves 8 for new tokens"),
        (["--prompt-tokens", "120", "--new-tokens", "16"], "exceed the 128 positions"),
    ])
    func decodeRefusesBadFlagsWithOneLine(extra: [String], message: String) throws {
        let run = try runColocate(["bench", "decode", "--preset", "opt-tiny", "--batch", "1"] + extra)
        #expect(run.status != 0)
        #expect(run.stderr.contains(message), "\(run.stderr)")
        #expect(run.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1, "\(run.stderr)")
    }

    @Test func coldStartPrintsItsBreakdownOnCPU() throws {
        let run = try runColocate(["bench", "cold-start", "--device", "cpu", "--preset", "opt-tiny", "--runs", "2"])
        #expect(run.status == 0, "\(run.stderr)")
        for r in 1...2 {
            #expect(run.stdout.contains("bench cold-start device=cpu model=opt-tiny dtype=f32 run=\(r): "), "\(run.stdout)")
            #expect(run.stdout.contains("cold start \(r): cpu pid "))
        }
        // The phases of LLM(…), as the rank reported them, and the first token.
        #expect(run.stdout.components(separatedBy: "worker processes started").count == 3, "\(run.stdout)")
        for phase in ["device ready", "weights loaded", "KV cache", "first generate (prompt 16, 1 new token)"] {
            #expect(run.stdout.contains(phase), "\(phase): \(run.stdout)")
        }
        // The model directory it wrote is gone afterwards.
        let written = run.stdout.split(separator: "\n").first { $0.hasPrefix("wrote opt-tiny") } ?? ""
        let path = written.range(of: " to ").map { String(written[$0.upperBound...].prefix { $0 != " " }) }
        #expect(path.map { $0.contains("colocate-cold-start") && !FileManager.default.fileExists(atPath: $0) } == true, "\(written)")
    }

    @Test func coldStartRefusesBadFlags() throws {
        for (args, message) in [(["--device", "tpu"], "unknown device 'tpu'"), (["--runs", "0"], "--runs must be at least 1"),
                                (["--dtype", "f64"], "unknown dtype 'f64'"), (["--preset", "nope"], "unknown preset 'nope'")] {
            let run = try runColocate(["bench", "cold-start", "--preset", "opt-tiny"] + args)
            #expect(run.status != 0 && run.stderr.contains(message), "\(args): \(run.stderr)")
        }
    }
}

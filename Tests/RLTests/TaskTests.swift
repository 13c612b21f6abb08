import Foundation
import Models
import Testing
@testable import RL

@Suite struct TaskTests {
    @Test func builtinTasksAreDeterministicCorrectAndHoldOutTheirEvalSet() throws {
        for kind in BuiltinTask.Kind.allCases {
            let task = BuiltinTask(kind: kind)
            let a = (0..<200).map { task.trainExample(at: $0, seed: 7) }
            let b = (0..<200).map { task.trainExample(at: $0, seed: 7) }
            #expect(a == b)
            #expect(a != (0..<200).map { task.trainExample(at: $0, seed: 8) })
            let eval = task.evalExamples(count: 50)
            #expect(eval.count == 50)
            #expect(Set(eval.map(\.prompt)).count == 50)
            #expect(Set(a.map(\.prompt)).isDisjoint(with: eval.map(\.prompt)))
            for e in a + eval {
                switch kind {
                case .addition:
                    let parts = e.prompt.dropLast().split(separator: "+").map { Int($0)! }
                    #expect(e.answer == String(parts[0] + parts[1]))
                case .reversal:
                    #expect(e.answer == String(e.prompt.dropFirst(4).dropLast().reversed()))
                case .sorting:
                    #expect(e.answer == String(e.prompt.dropFirst(5).dropLast().sorted()))
                }
            }
        }
        #expect(throws: RLError.self) { try BuiltinTask(named: "chess") }
    }

    @Test func exactMatchCutsAtStopAndStripsWhitespace() async throws {
        let e = RLExample(prompt: "2+3=", answer: "5")
        #expect(try await Reward.exactMatch(e, " 5\n") == 1)
        #expect(try await Reward.exactMatch(e, "55") == 0)
        #expect(try await Reward.exactMatch(e, CompletionText.cut("5\n7+1=8", stop: ["\n"])) == 1)
        #expect(try await Reward.exactMatch(e, CompletionText.cut("5;", stop: ["\n", ";"])) == 1)
        #expect(CompletionText.untilEOS([5, 6, 2, 7], eos: [2]) == [5, 6])
        #expect(CompletionText.untilEOS([5, 6], eos: [2]) == [5, 6])
    }

    struct Boom: Error {}

    @Test func aCustomRewardClosureSeesPromptAndCompletionAndItsFailureIsOneLine() async throws {
        let r = Reward { prompt, completion in Double(prompt.count + completion.count) }
        #expect(try await r(RLExample(prompt: "ab", answer: ""), "cde") == 5)
        let bad = Reward { _, _ in throw Boom() }
        do {
            _ = try await bad(RLExample(prompt: "1+1=", answer: "2"), "2")
            Issue.record("expected an error")
        } catch let e as RLError {
            #expect(e.description.contains("reward function failed on prompt \"1+1=\""))
            #expect(!e.description.contains("\n"))
        }
        let nan = Reward { _, _ in .nan }
        await #expect(throws: RLError.self) { try await nan(RLExample(prompt: "x", answer: ""), "") }
    }

    func write(_ lines: [String]) throws -> String {
        let path = NSTemporaryDirectory() + "rl-data-\(UUID().uuidString).jsonl"
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func jsonlDatasetHoldsOutEveryTenthRowAndShufflesDeterministically() throws {
        let path = try write((0..<30).map { "{\"prompt\": \"q\($0)\", \"answer\": \($0)}" })
        let d = try JSONLDataset(path: path)
        #expect(d.train.count == 27)
        #expect(d.eval.map(\.prompt) == ["q9", "q19", "q29"])
        #expect(d.eval[0].answer == "9")
        let epoch = (0..<27).map { d.trainExample(at: $0, seed: 1).prompt }
        #expect(Set(epoch).count == 27)
        #expect(epoch == (0..<27).map { d.trainExample(at: $0, seed: 1).prompt })
        let evalPath = try write(["{\"prompt\": \"e\", \"answer\": \"x\"}"])
        let d2 = try JSONLDataset(path: path, evalPath: evalPath)
        #expect(d2.train.count == 30 && d2.eval == [RLExample(prompt: "e", answer: "x")])
    }

    @Test func badRowsAreOneLineErrorsNamingTheLine() throws {
        for (rows, needle) in [
            (["{\"prompt\": \"a\", \"answer\": \"b\"}", "{\"prompt\": \"a\"}"], ":2: the row has no \"answer\""),
            (["{\"question\": \"a\", \"answer\": \"b\"}"], ":1: the row has neither \"prompt\" nor \"messages\""),
            (["not json"], ":1: not a JSON object"),
            (["{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"answer\": \"b\"}"], "needs a chat template"),
        ] {
            let path = try write(rows)
            do {
                _ = try JSONLDataset.load(path)
                Issue.record("expected an error for \(rows)")
            } catch let e as RLError {
                #expect(e.description.contains(needle), "\(e.description)")
                #expect(!e.description.contains("\n"))
            }
        }
        let chat = try write(["{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"answer\": \"b\"}"])
        let rows = try JSONLDataset.load(chat) { turns in turns.map { "<\($0.role)>\($0.content)" }.joined() + "<assistant>" }
        #expect(rows == [RLExample(prompt: "<user>hi<assistant>", answer: "b")])
    }

    @Test func chatRowsRenderThroughTheModelsTemplateAndAreMarkedChatFormatted() throws {
        // A Qwen2-style template (the fixture family's), rendered as `colocate rl --data` does.
        let template = try ChatTemplate(source: "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
        let render: JSONLDataset.ChatRenderer = { turns in
            try template.render(messages: turns.map { .object([("role", .string($0.role)), ("content", .string($0.content))]) },
                                addGenerationPrompt: true)
        }
        let path = try write((0..<3).map { "{\"messages\": [{\"role\": \"user\", \"content\": \"q\($0)\"}], \"answer\": \"a\($0)\"}" })
        let d = try JSONLDataset(path: path, chat: render)
        #expect(d.chatFormatted)
        #expect(d.train.first?.prompt == "<|im_start|>user\nq0<|im_end|>\n<|im_start|>assistant\n")
        #expect(!(try JSONLDataset(path: try write(["{\"prompt\": \"p\", \"answer\": 1}", "{\"prompt\": \"q\", \"answer\": 2}"]), chat: render)).chatFormatted)
    }
}

import Compute
import Engine
import Testing

@Suite("Memory budget")
struct MemoryBudgetTests {
    @Test("Charges beyond the budget are refused with a matchable code and a message naming them")
    func overBudgetIsACode() throws {
        let device = Device(kind: .cpu, ordinal: 0, uuid: "CPU-test", capacity: 1000)
        var budget = try MemoryBudget(device: device, utilization: 0.5)
        try budget.charge(400, for: "weights")
        let refusal = try #require(throws: EngineError.self) { try budget.charge(200, for: "KV cache") }
        #expect(refusal.code == .overBudget)
        #expect(refusal.message.contains("KV cache needs"))
        let bad = try #require(throws: EngineError.self) { try MemoryBudget(device: device, utilization: 1.5) }
        #expect(bad.code == .invalidArgument)
    }
}

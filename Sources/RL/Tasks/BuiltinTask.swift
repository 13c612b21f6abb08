import Compute

/// The built-in verifiable tasks: prompts made by a seeded generator, answers computed exactly.
///
/// Prompts are split by a hash of their text: about one in ten belongs to the held-out set and never
/// appears in training, so evaluation measures generalisation and not recall.
public struct BuiltinTask: PromptSource {
    public enum Kind: String, Sendable, CaseIterable {
        /// `a+b=` → the decimal sum (`digits` per operand).
        case addition
        /// `rev abc=` → `cba` (lowercase letters, `digits` + 1 … `digits` + 2 of them).
        case reversal
        /// `sort 3142=` → `1234` (`digits` + 2 decimal digits).
        case sorting
    }

    public let kind: Kind
    /// Size of the operands: digits per operand for addition; sets the string length of the others.
    public let digits: Int
    public var name: String { kind.rawValue }

    public init(kind: Kind, digits: Int = 2) {
        self.kind = kind
        self.digits = max(1, digits)
    }

    /// Parses a task name (`addition`, `reversal`, `sorting`).
    public init(named name: String, digits: Int = 2) throws(RLError) {
        guard let kind = Kind(rawValue: name) else {
            throw RLError("unknown task '\(name)' (available: \(Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.init(kind: kind, digits: digits)
    }

    /// Whether `prompt` belongs to the held-out split.
    public static func isHeldOut(_ prompt: String) -> Bool {
        // FNV-1a: stable across runs and platforms (Swift's Hasher is seeded per process).
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in prompt.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h % 10 == 0
    }

    public func trainExample(at index: Int, seed: UInt64) -> RLExample {
        var rng = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) &+ 1)
        while true {
            let e = example(&rng)
            if !Self.isHeldOut(e.prompt) { return e }
        }
    }

    public func evalExamples(count: Int) -> [RLExample] {
        // Fixed (not tied to the run's seed): runs with different seeds are scored on the same prompts.
        var rng = SplitMix64(seed: 0xE7A1)
        var seen = Set<String>(), out: [RLExample] = []
        var attempts = 0
        while out.count < count && attempts < count * 1000 {
            attempts += 1
            let e = example(&rng)
            if Self.isHeldOut(e.prompt) && seen.insert(e.prompt).inserted { out.append(e) }
        }
        return out
    }

    private func example(_ rng: inout SplitMix64) -> RLExample {
        func below(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        switch kind {
        case .addition:
            var limit = 1
            for _ in 0..<digits { limit *= 10 }
            let a = below(limit), b = below(limit)
            return RLExample(prompt: "\(a)+\(b)=", answer: "\(a + b)")
        case .reversal:
            let letters = Array("abcdefghijklmnopqrstuvwxyz")
            let s = String((0..<(digits + 1 + below(2))).map { _ in letters[below(letters.count)] })
            return RLExample(prompt: "rev \(s)=", answer: String(s.reversed()))
        case .sorting:
            let s = (0..<(digits + 2)).map { _ in below(10) }
            return RLExample(prompt: "sort \(s.map(String.init).joined())=", answer: s.sorted().map(String.init).joined())
        }
    }
}

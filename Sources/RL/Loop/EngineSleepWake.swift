import Engine

/// What the loop needs of an engine's sleep/wake: `LLM.sleep(level:)` and `LLM.wakeUp(tags:)`.
///
/// The engine's implementation lives in Engine; `LLM` conforms with a one-line extension
/// (`extension LLM: EngineSleepWake { … }`, mapping `wakeUp(weights:kvCache:)` to its tags), so the loop
/// sleeps engines only where the build has it. Without it, `--sleep-level 1|2` is refused up front.
public protocol EngineSleepWake: Sendable {
    /// Level 1 releases the KV cache; level 2 the weights too (the next push restores them).
    func sleep(level: Int) async throws
    /// Maps memory back: the weights (before a push after a level-2 sleep), then the KV cache.
    func wakeUp(weights: Bool, kvCache: Bool) async throws
}

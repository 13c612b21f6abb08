extension Duration {
    /// The duration in seconds, as a Double (for reports and rates).
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC, in nanoseconds: the same clock in every process of the machine, so times taken in
/// two processes (a call sent here, handled there) can be subtracted.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

import Compute

/// Deterministic random numbers for the kernel tests (SplitMix64).
struct SeededRandom {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `range`.
    mutating func float(in range: ClosedRange<Float> = -1...1) -> Float {
        let unit = Float(next() >> 40) / Float(1 << 24)
        return range.lowerBound + (range.upperBound - range.lowerBound) * unit
    }

    mutating func floats(_ count: Int, in range: ClosedRange<Float> = -1...1) -> [Float] {
        (0..<count).map { _ in float(in: range) }
    }

    mutating func int(below bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

/// A host tensor of `dtype` holding `values` (rounded to the dtype).
func tensor(_ values: [Float], _ shape: [Int], _ dtype: DType = .f32) -> Tensor {
    let t = Tensor(values, shape: shape)
    return dtype == .f32 ? t : try! t.converted(to: dtype)
}

/// Largest |a − b| / (|b| + floor) over the elements; `floor` keeps values near zero from dominating.
func maxRelativeError(_ a: [Float], _ b: [Double], floor: Double = 1e-6) -> Double {
    precondition(a.count == b.count)
    var worst = 0.0
    for (x, y) in zip(a, b) {
        let e = abs(Double(x) - y) / (abs(y) + floor)
        if !(e <= worst) { worst = e.isNaN ? .infinity : e }
    }
    return worst
}

import Compute
import Foundation

/// Deterministic random data for the kernel tests, from the project's SplitMix64.
extension SplitMix64 {
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

/// The pid of a process that has exited and been reaped: a stand-in for a dead peer.
func exitedProcessID() throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/true")
    try process.run()
    process.waitUntilExit()
    return process.processIdentifier
}

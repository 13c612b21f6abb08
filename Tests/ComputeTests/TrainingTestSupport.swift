import Compute
import Foundation

/// Central differences of `Σ_i r[i]·f(x)[i]` with respect to x, in f64: the reference gradient that the
/// f32 backward kernels are checked against.
func numericalGradient(_ x: [Double], weights r: [Double], step: Double = 1e-5, _ f: ([Double]) -> [Double]) -> [Double] {
    var x = x
    var gradient = [Double](repeating: 0, count: x.count)
    for i in 0..<x.count {
        let saved = x[i]
        x[i] = saved + step
        let plus = zip(f(x), r).reduce(0) { $0 + $1.0 * $1.1 }
        x[i] = saved - step
        let minus = zip(f(x), r).reduce(0) { $0 + $1.0 * $1.1 }
        x[i] = saved
        gradient[i] = (plus - minus) / (2 * step)
    }
    return gradient
}

/// Largest |a − b| relative to the largest |b| (plus a floor).
func maxScaledError(_ a: [Float], _ b: [Double], floor: Double = 1e-6) -> Double {
    precondition(a.count == b.count, "\(a.count) values against \(b.count)")
    let scale = b.map(abs).max() ?? 0
    var worst = 0.0
    for (x, y) in zip(a, b) {
        let e = abs(Double(x) - y)
        if !(e <= worst) { worst = e.isNaN ? .infinity : e }
    }
    return worst / (scale + floor)
}

extension Array where Element == Float {
    var doubles: [Double] { map(Double.init) }
}

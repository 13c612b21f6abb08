import Foundation

/// An SVG chart of mean reward (per step) and held-out accuracy (per evaluation) against step, drawn
/// without any plotting library: axes with ticks, grid, two series and a legend.
public enum RewardPlot {
    public static func svg(_ records: [StepMetrics], title: String = "GRPO") -> String {
        let width = 720.0, height = 420.0
        let left = 64.0, right = 24.0, top = 48.0, bottom = 56.0
        let plotW = width - left - right, plotH = height - top - bottom
        let rewards = records.compactMap { r in r.rewardMean.map { (Double(r.step), $0) } }
        let accuracy = records.compactMap { r in r.evalAccuracy.map { (Double(r.step), $0) } }
        let maxStep = max(1, records.map(\.step).max() ?? 1)
        let values = rewards.map(\.1) + accuracy.map(\.1)
        let yMin = min(0, values.min() ?? 0), yMax = max(1, values.max() ?? 1)
        func x(_ s: Double) -> Double { left + s / Double(maxStep) * plotW }
        func y(_ v: Double) -> Double { top + (1 - (v - yMin) / (yMax - yMin)) * plotH }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }

        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(width / 2))" y="24" text-anchor="middle" font-size="15">\(escape(title))</text>

        """
        // Grid and y ticks.
        for i in 0...5 {
            let v = yMin + (yMax - yMin) * Double(i) / 5, yy = y(v)
            s += "<line x1=\"\(f(left))\" y1=\"\(f(yy))\" x2=\"\(f(left + plotW))\" y2=\"\(f(yy))\" stroke=\"#e5e5e5\"/>\n"
            s += "<text x=\"\(f(left - 8))\" y=\"\(f(yy + 4))\" text-anchor=\"end\">\(String(format: "%.2f", v))</text>\n"
        }
        // x ticks at round steps.
        let stepTick = niceStep(Double(maxStep) / 8)
        var t = 0.0
        while t <= Double(maxStep) + 1e-9 {
            s += "<line x1=\"\(f(x(t)))\" y1=\"\(f(top + plotH))\" x2=\"\(f(x(t)))\" y2=\"\(f(top + plotH + 5))\" stroke=\"black\"/>\n"
            s += "<text x=\"\(f(x(t)))\" y=\"\(f(top + plotH + 19))\" text-anchor=\"middle\">\(Int(t))</text>\n"
            t += stepTick
        }
        // Axes and their labels.
        s += "<polyline points=\"\(f(left)),\(f(top)) \(f(left)),\(f(top + plotH)) \(f(left + plotW)),\(f(top + plotH))\" fill=\"none\" stroke=\"black\"/>\n"
        s += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 14))\" text-anchor=\"middle\">step</text>\n"
        s += "<text transform=\"translate(16 \(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">reward / accuracy</text>\n"
        // Series.
        func polyline(_ pts: [(Double, Double)], color: String, markers: Bool) {
            guard !pts.isEmpty else { return }
            let p = pts.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ")
            s += "<polyline points=\"\(p)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            if markers || pts.count == 1 {
                for q in pts { s += "<circle cx=\"\(f(x(q.0)))\" cy=\"\(f(y(q.1)))\" r=\"3.5\" fill=\"\(color)\"/>\n" }
            }
        }
        polyline(rewards, color: "#1f77b4", markers: false)
        polyline(accuracy, color: "#d62728", markers: true)
        // Legend.
        let lx = left + 12, ly = top + 10
        s += "<rect x=\"\(f(lx - 6))\" y=\"\(f(ly - 8))\" width=\"190\" height=\"44\" fill=\"white\" stroke=\"#bbb\"/>\n"
        s += "<line x1=\"\(f(lx))\" y1=\"\(f(ly + 4))\" x2=\"\(f(lx + 24))\" y2=\"\(f(ly + 4))\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n"
        s += "<text x=\"\(f(lx + 32))\" y=\"\(f(ly + 8))\">mean reward (train)</text>\n"
        s += "<line x1=\"\(f(lx))\" y1=\"\(f(ly + 24))\" x2=\"\(f(lx + 24))\" y2=\"\(f(ly + 24))\" stroke=\"#d62728\" stroke-width=\"2\"/>\n"
        s += "<circle cx=\"\(f(lx + 12))\" cy=\"\(f(ly + 24))\" r=\"3.5\" fill=\"#d62728\"/>\n"
        s += "<text x=\"\(f(lx + 32))\" y=\"\(f(ly + 28))\">held-out accuracy</text>\n"
        s += "</svg>\n"
        return s
    }

    static func niceStep(_ raw: Double) -> Double {
        guard raw > 1 else { return 1 }
        let p = pow(10, floor(log10(raw)))
        for m in [1.0, 2, 5, 10] where m * p >= raw { return m * p }
        return 10 * p
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

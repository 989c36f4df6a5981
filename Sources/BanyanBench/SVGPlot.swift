import Foundation

/// A line chart: one series per attention mode (or variant), x and y in data units.
public struct PlotSpec: Codable, Sendable {
    public struct Series: Codable, Sendable {
        public var name: String
        /// Points sorted by x; missing points (not measured) are simply absent.
        public var points: [[Double]]
        public init(name: String, points: [(Double, Double)]) {
            self.name = name
            self.points = points.sorted { $0.0 < $1.0 }.map { [$0.0, $0.1] }
        }
    }
    public var title: String
    public var xLabel: String
    public var yLabel: String
    /// Log₂ x axis (batch sizes, prefix lengths).
    public var logX: Bool
    public var series: [Series]

    public init(title: String, xLabel: String, yLabel: String, logX: Bool, series: [Series]) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.logX = logX; self.series = series
    }
}

/// Renders a `PlotSpec` as a standalone SVG document (no dependencies; the y axis starts at 0).
public enum SVGPlot {
    static let width = 720.0, height = 440.0
    static let left = 80.0, right = 170.0, top = 40.0, bottom = 60.0
    static let colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]

    public static func render(_ spec: PlotSpec) -> String {
        let all = spec.series.flatMap(\.points).filter { $0[0].isFinite && $0[1].isFinite && (!spec.logX || $0[0] > 0) }
        let xs = all.map { spec.logX ? log2($0[0]) : $0[0] }
        var x0 = xs.min() ?? 0, x1 = xs.max() ?? 1
        if x1 - x0 < 1e-9 { x0 -= 1; x1 += 1 }
        let yMax = niceCeiling(all.map { $0[1] }.max() ?? 1)
        let plotW = width - left - right, plotH = height - top - bottom
        func px(_ x: Double) -> Double { left + ((spec.logX ? log2(x) : x) - x0) / (x1 - x0) * plotW }
        func py(_ y: Double) -> Double { top + plotH - y / yMax * plotH }

        var s = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect x="0" y="0" width="\(Int(width))" height="\(Int(height))" fill="white"/>
        <text x="\(f(left + plotW / 2))" y="22" text-anchor="middle" font-size="15">\(escape(spec.title))</text>

        """
        // Axes, grid and ticks.
        s += "<line x1=\"\(f(left))\" y1=\"\(f(top + plotH))\" x2=\"\(f(left + plotW))\" y2=\"\(f(top + plotH))\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotH))\" stroke=\"black\"/>\n"
        for i in 0...5 {
            let y = yMax * Double(i) / 5
            s += "<line x1=\"\(f(left))\" y1=\"\(f(py(y)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(py(y)))\" stroke=\"#dddddd\"/>\n"
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(py(y) + 4))\" text-anchor=\"end\">\(escape(tick(y)))</text>\n"
        }
        let xTicks: [Double] = spec.logX
            ? Array(Set(all.map { $0[0] })).sorted()
            : (0...5).map { x0 + (x1 - x0) * Double($0) / 5 }
        for x in xTicks {
            let X = spec.logX ? px(x) : left + (x - x0) / (x1 - x0) * plotW
            s += "<line x1=\"\(f(X))\" y1=\"\(f(top + plotH))\" x2=\"\(f(X))\" y2=\"\(f(top + plotH + 5))\" stroke=\"black\"/>\n"
            s += "<text x=\"\(f(X))\" y=\"\(f(top + plotH + 18))\" text-anchor=\"middle\">\(escape(tick(x)))</text>\n"
        }
        s += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 15))\" text-anchor=\"middle\">\(escape(spec.xLabel))</text>\n"
        s += "<text x=\"18\" y=\"\(f(top + plotH / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 18 \(f(top + plotH / 2)))\">\(escape(spec.yLabel))</text>\n"

        // Series: polyline + markers, legend on the right.
        for (i, series) in spec.series.enumerated() {
            let color = colors[i % colors.count]
            let pts = series.points.filter { $0[0].isFinite && $0[1].isFinite && (!spec.logX || $0[0] > 0) }
            if pts.count > 1 {
                let path = pts.map { "\(f(px($0[0]))),\(f(py($0[1])))" }.joined(separator: " ")
                s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
            }
            for p in pts {
                s += "<circle cx=\"\(f(px(p[0])))\" cy=\"\(f(py(p[1])))\" r=\"3.5\" fill=\"\(color)\"/>\n"
            }
            let ly = top + 10 + Double(i) * 20
            s += "<line x1=\"\(f(width - right + 15))\" y1=\"\(f(ly))\" x2=\"\(f(width - right + 40))\" y2=\"\(f(ly))\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            s += "<text x=\"\(f(width - right + 46))\" y=\"\(f(ly + 4))\">\(escape(series.name))</text>\n"
        }
        s += "</svg>\n"
        return s
    }

    static func f(_ x: Double) -> String { String(format: "%.1f", x) }

    static func tick(_ x: Double) -> String {
        if x == 0 { return "0" }
        let a = abs(x)
        if a >= 10000 { return String(format: "%.0fk", x / 1000) }
        if a >= 100 || x == x.rounded() { return String(format: "%.0f", x) }
        if a >= 1 { return String(format: "%.1f", x) }
        return String(format: "%.2g", x)
    }

    /// The smallest 1, 2 or 5 × 10ⁿ at or above `x`.
    static func niceCeiling(_ x: Double) -> Double {
        guard x > 0, x.isFinite else { return 1 }
        let e = pow(10, floor(log10(x)))
        for m in [1.0, 2, 2.5, 5, 10] where m * e >= x * 0.9999 { return m * e }
        return 10 * e
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

import Foundation

/// A line chart drawn as standalone SVG: axes with rounded ticks (linear or logarithmic x), one polyline per
/// series, a legend, and each point's value as a tooltip (`<title>`), so a browser shows it without scripts.
public struct LineChart: Sendable {
    /// One line.
    public struct Series: Sendable {
        public var name: String
        public var points: [(x: Double, y: Double)]
        /// Points joined by a dashed line.
        public var dashed: Bool
        /// A CSS colour; nil takes the palette's next.
        public var color: String?

        public init(name: String, points: [(x: Double, y: Double)], dashed: Bool = false, color: String? = nil) {
            self.name = name
            self.points = points
            self.dashed = dashed
            self.color = color
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    /// Logarithmic x axis (base 2 ticks when the data spans powers of two, else base 10).
    public var logarithmicX: Bool
    /// Fixed y range; nil fits the data (from zero when all values are positive).
    public var yRange: ClosedRange<Double>?
    public var width: Double
    public var height: Double

    public init(title: String, xLabel: String, yLabel: String, series: [Series], logarithmicX: Bool = false,
                yRange: ClosedRange<Double>? = nil, width: Double = 640, height: Double = 360) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.logarithmicX = logarithmicX
        self.yRange = yRange
        self.width = width
        self.height = height
    }

    /// Colours of the series, in order (Tableau 10).
    public static let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                                 "#ff9da7", "#9c755f", "#bab0ac"]

    /// The chart as an `<svg>` element (embeddable in HTML, or a file of its own).
    public func svg() -> String {
        let left = 64.0, right = 16.0, top = 32.0, bottom = 48.0 + 18 * Double((series.count + 2) / 3)
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let points = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite && (!logarithmicX || $0.x > 0) }
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
            + "viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(fmt(width / 2))\" y=\"18\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">\(escape(title))</text>\n"
        guard let xMin = points.map(\.x).min(), let xMax = points.map(\.x).max() else {
            out += "<text x=\"\(fmt(width / 2))\" y=\"\(fmt(height / 2))\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n</svg>\n"
            return out
        }
        let ys = points.map(\.y)
        var yLow = yRange?.lowerBound ?? min(ys.min()!, ys.allSatisfy { $0 >= 0 } ? 0 : ys.min()!)
        var yHigh = yRange?.upperBound ?? ys.max()!
        if yHigh <= yLow { yHigh = yLow + max(abs(yLow) * 0.1, 1) }
        let yTicks = LineChart.niceTicks(yLow, yHigh)
        if yRange == nil { yLow = min(yLow, yTicks.first!); yHigh = max(yHigh, yTicks.last!) }
        let xTicks: [Double]
        let xScale: (Double) -> Double
        if logarithmicX {
            let base = points.allSatisfy { log2($0.x) == log2($0.x).rounded() } ? 2.0 : 10.0
            let low = floor(log(xMin) / log(base)), high = max(ceil(log(xMax) / log(base)), low + 1)
            xTicks = stride(from: low, through: high, by: 1).map { pow(base, $0) }
            xScale = { left + (log($0) / log(base) - low) / (high - low) * plotWidth }
        } else {
            let ticks = LineChart.niceTicks(xMin, xMax > xMin ? xMax : xMin + 1)
            let low = ticks.first!, high = ticks.last!
            xTicks = ticks
            xScale = { left + ($0 - low) / (high - low) * plotWidth }
        }
        let yScale = { (y: Double) in top + (1 - (y - yLow) / (yHigh - yLow)) * plotHeight }

        // Grid, ticks and axis labels.
        for y in yTicks where y >= yLow && y <= yHigh {
            let py = fmt(yScale(y))
            out += "<line x1=\"\(fmt(left))\" x2=\"\(fmt(left + plotWidth))\" y1=\"\(py)\" y2=\"\(py)\" stroke=\"#e5e5e5\"/>"
            out += "<text x=\"\(fmt(left - 6))\" y=\"\(py)\" dy=\"4\" text-anchor=\"end\">\(LineChart.label(y))</text>\n"
        }
        for x in xTicks {
            let px = fmt(xScale(x))
            out += "<line x1=\"\(px)\" x2=\"\(px)\" y1=\"\(fmt(top))\" y2=\"\(fmt(top + plotHeight))\" stroke=\"#f0f0f0\"/>"
            out += "<text x=\"\(px)\" y=\"\(fmt(top + plotHeight + 16))\" text-anchor=\"middle\">\(LineChart.label(x))</text>\n"
        }
        out += "<rect x=\"\(fmt(left))\" y=\"\(fmt(top))\" width=\"\(fmt(plotWidth))\" height=\"\(fmt(plotHeight))\" fill=\"none\" stroke=\"#888\"/>\n"
        out += "<text x=\"\(fmt(left + plotWidth / 2))\" y=\"\(fmt(top + plotHeight + 34))\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        out += "<text transform=\"translate(14 \(fmt(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"

        // Lines, points with their values, legend.
        for (index, line) in series.enumerated() {
            let color = line.color ?? LineChart.palette[index % LineChart.palette.count]
            let shown = LineChart.thinned(line.points.filter { $0.x.isFinite && $0.y.isFinite && (!logarithmicX || $0.x > 0) })
            let path = shown.map { "\(fmt(xScale($0.x))),\(fmt(yScale($0.y)))" }.joined(separator: " ")
            out += "<g class=\"series\" data-name=\"\(escape(line.name))\">"
            out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(line.dashed ? " stroke-dasharray=\"6 4\"" : "") points=\"\(path)\"/>"
            if shown.count <= 64 {
                for point in shown {
                    out += "<circle cx=\"\(fmt(xScale(point.x)))\" cy=\"\(fmt(yScale(point.y)))\" r=\"3\" fill=\"\(color)\">"
                    out += "<title>\(escape(line.name)): \(LineChart.label(point.x)), \(LineChart.label(point.y))</title></circle>"
                }
            }
            out += "</g>\n"
            let column = Double(index % 3), row = Double(index / 3)
            let lx = left + column * plotWidth / 3, ly = top + plotHeight + 52 + row * 18
            out += "<line x1=\"\(fmt(lx))\" x2=\"\(fmt(lx + 20))\" y1=\"\(fmt(ly - 4))\" y2=\"\(fmt(ly - 4))\" stroke=\"\(color)\" stroke-width=\"2\"\(line.dashed ? " stroke-dasharray=\"6 4\"" : "")/>"
            out += "<text x=\"\(fmt(lx + 26))\" y=\"\(fmt(ly))\">\(escape(line.name))</text>\n"
        }
        out += "</svg>\n"
        return out
    }

    /// A long series as at most 1,000 points, each the mean of consecutive ones (a 100,000-step run's loss
    /// stays a small file and reads as its trend); series of up to 2,000 points as they are.
    public static func thinned(_ points: [(x: Double, y: Double)]) -> [(x: Double, y: Double)] {
        guard points.count > 2000 else { return points }
        let buckets = 1000
        return (0..<buckets).map { bucket in
            let range = (bucket * points.count / buckets)..<((bucket + 1) * points.count / buckets)
            let n = Double(range.count)
            return (points[range].map(\.x).reduce(0, +) / n, points[range].map(\.y).reduce(0, +) / n)
        }
    }

    /// About five ticks at 1, 2 or 5 × a power of ten, covering [low, high].
    public static func niceTicks(_ low: Double, _ high: Double) -> [Double] {
        let span = high - low
        let raw = span / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        let first = floor(low / step) * step
        let last = ceil(high / step) * step
        return stride(from: first, through: last + step / 2, by: step).map { abs($0) < step * 1e-9 ? 0 : $0 }
    }

    /// A tick or tooltip value: integers below 100,000 plainly (16384 stays 16384), larger values with k/M/G,
    /// others — and values of 10¹⁵ or more, which a diverging run's gradient norm reaches — with 3 significant digits.
    public static func label(_ value: Double) -> String {
        let magnitude = abs(value)
        guard magnitude < 1e15 else { return String(format: "%.3g", value) }
        if magnitude >= 1e9 { return trimmed(value / 1e9) + "G" }
        if magnitude >= 1e6 { return trimmed(value / 1e6) + "M" }
        if magnitude >= 1e5 { return trimmed(value / 1e3) + "k" }
        if value == value.rounded() { return String(Int(value)) }
        if magnitude >= 1e4 { return trimmed(value / 1e3) + "k" }
        return String(format: "%.3g", value)
    }

    private static func trimmed(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.3g", value)
    }
}

/// A number with at most two decimals, for SVG coordinates.
func fmt(_ value: Double) -> String {
    String(format: "%.2f", value)
}

/// Text made safe inside XML elements and attributes.
public func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}

import Foundation

/// A Gantt chart as standalone SVG: one row per lane (a pipeline rank), one bar per span, coloured by kind, each
/// with its name as a tooltip — the pipeline timeline of a run report.
public struct TimelineChart: Sendable {
    /// One bar.
    public struct Span: Sendable {
        public var lane: Int
        public var start: Double
        public var end: Double
        public var kind: String
        public var name: String

        public init(lane: Int, start: Double, end: Double, kind: String, name: String) {
            self.lane = lane
            self.start = start
            self.end = end
            self.kind = kind
            self.name = name
        }
    }

    public var title: String
    public var laneNames: [String]
    public var spans: [Span]
    /// Unit of the time axis's labels.
    public var unit: String
    public var width: Double

    public init(title: String, laneNames: [String], spans: [Span], unit: String = "ms", width: Double = 1000) {
        self.title = title
        self.laneNames = laneNames
        self.spans = spans
        self.unit = unit
        self.width = width
    }

    /// Colours by kind; other kinds are grey.
    public static let colors = ["forward": "#4e79a7", "backward": "#f28e2b", "backward weights": "#edc948",
                                "wait": "#e15759", "step": "#59a14f"]

    private static let top = 32.0, row = 26.0

    /// The chart's height in pixels: its lanes, axis and legend.
    public var height: Double { TimelineChart.top + TimelineChart.row * Double(max(laneNames.count, 1)) + 64 }

    public func svg() -> String {
        let left = 150.0, right = 16.0, top = TimelineChart.top, row = TimelineChart.row
        let plotWidth = width - left - right
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart timeline\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
            + "viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(fmt(width / 2))\" y=\"18\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">\(escape(title))</text>\n"
        guard let first = spans.map(\.start).min(), let last = spans.map(\.end).max(), last > first else {
            return out + "<text x=\"\(fmt(width / 2))\" y=\"\(fmt(height / 2))\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n</svg>\n"
        }
        let ticks = LineChart.niceTicks(0, last - first)
        let scale = plotWidth / max(ticks.last!, last - first)
        for (lane, name) in laneNames.enumerated() {
            out += "<text x=\"\(fmt(left - 6))\" y=\"\(fmt(top + Double(lane) * row + row / 2 + 4))\" text-anchor=\"end\">\(escape(name))</text>\n"
        }
        for tick in ticks {
            let x = fmt(left + tick * scale)
            out += "<line x1=\"\(x)\" x2=\"\(x)\" y1=\"\(fmt(top))\" y2=\"\(fmt(top + row * Double(laneNames.count)))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(x)\" y=\"\(fmt(top + row * Double(laneNames.count) + 14))\" text-anchor=\"middle\">\(LineChart.label(tick))</text>\n"
        }
        out += "<text x=\"\(fmt(left + plotWidth / 2))\" y=\"\(fmt(top + row * Double(laneNames.count) + 30))\" text-anchor=\"middle\">\(escape(unit))</text>\n"
        for span in spans {
            let x = left + (span.start - first) * scale, w = max((span.end - span.start) * scale, 0.5)
            let y = top + Double(span.lane) * row + 3
            out += "<rect class=\"span\" x=\"\(fmt(x))\" y=\"\(fmt(y))\" width=\"\(fmt(w))\" height=\"\(fmt(row - 6))\" "
                + "fill=\"\(TimelineChart.colors[span.kind] ?? "#bab0ac")\"><title>\(escape(span.name)): \(LineChart.label(span.end - span.start)) \(escape(unit))</title></rect>"
        }
        out += "\n"
        var x = left
        for kind in ["forward", "backward", "backward weights", "wait", "step"] where spans.contains(where: { $0.kind == kind }) {
            let y = top + row * Double(laneNames.count) + 46
            out += "<rect x=\"\(fmt(x))\" y=\"\(fmt(y - 9))\" width=\"12\" height=\"10\" fill=\"\(TimelineChart.colors[kind]!)\"/>"
            out += "<text x=\"\(fmt(x + 16))\" y=\"\(fmt(y))\">\(escape(kind))</text>"
            x += 40 + Double(kind.count) * 6
        }
        return out + "\n</svg>\n"
    }
}

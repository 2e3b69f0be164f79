import Foundation
import KeelCore
import KeelPlot

/// A self-contained HTML page of one or more runs (overlaid): loss against steps and tokens, learning rate,
/// gradient norm, throughput, MFU, exposed communication, checkpoint stalls, pipeline bubble, a pipeline timeline
/// from a trace, and each run's config and hardware. Charts are inline SVG, so the page needs no network and no
/// script to show them; a short script only records, on the page, how many charts the browser drew (the test's
/// check).
public struct RunReport {
    public var runs: [RunHistory]
    /// A Chrome trace from `keel train --trace`: its last step becomes the pipeline timeline.
    public var trace: URL?
    /// Peak FLOP/s of one device, for MFU (without it the report shows achieved model FLOP/s only).
    public var peakFLOPs: Double?

    public init(runs: [RunHistory], trace: URL? = nil, peakFLOPs: Double? = nil) {
        self.runs = runs
        self.trace = trace
        self.peakFLOPs = peakFLOPs
    }

    /// Width of one chart; two sit side by side.
    static let chartWidth = 540.0, chartHeight = 330.0

    /// Pixel width of the charts-only page (`html(chartsOnly: true)`).
    public static let chartsPageWidth = Int(2 * chartWidth + 60)

    /// The charts with data, in page order.
    public func charts() throws -> [String] {
        var charts: [String] = []
        func add(_ title: String, x: String, y: String, _ series: [LineChart.Series], logX: Bool = false) {
            guard series.contains(where: { !$0.points.isEmpty }) else { return }
            charts.append(LineChart(title: title, xLabel: x, yLabel: y, series: series, logarithmicX: logX,
                                    width: RunReport.chartWidth, height: RunReport.chartHeight).svg())
        }
        // One colour per run in every chart; its validation loss dashed in the same colour.
        func color(_ index: Int) -> String { LineChart.palette[index % LineChart.palette.count] }
        func perRun(_ key: String, against x: String = "step", scale: Double = 1) -> [LineChart.Series] {
            runs.enumerated().map { index, run in
                LineChart.Series(name: run.name, points: run.series(key, against: x).map { ($0.x, $0.y * scale) }, color: color(index))
            }
        }
        func validation(byTokens: Bool) -> [LineChart.Series] {
            runs.enumerated().map { index, run in
                LineChart.Series(name: "\(run.name) validation", points: byTokens ? run.validationByTokens : run.validation.map { ($0.step, $0.loss) },
                                 dashed: true, color: color(index))
            }
        }
        add("Loss", x: "step", y: "loss", perRun("loss") + validation(byTokens: false))
        add("Loss against tokens", x: "tokens", y: "loss", perRun("loss", against: "tokens") + validation(byTokens: true))
        add("Learning rate", x: "step", y: "learning rate", perRun("lr"))
        add("Gradient norm (before clipping)", x: "step", y: "norm", perRun("grad_norm"))
        add("Throughput", x: "step", y: "tokens/s", perRun("tokens_per_s"))
        let flops = runs.enumerated().map { index, run -> LineChart.Series in
            // Per device needs the device count: a run without hardware.json whose config leaves dp out has none.
            guard let perToken = run.flopsPerToken, let devices = run.devices else { return LineChart.Series(name: run.name, points: []) }
            let points = run.series("tokens_per_s").map { point -> (x: Double, y: Double) in
                let perDevice = point.y * perToken / Double(devices)
                return (point.x, peakFLOPs.map { perDevice / $0 * 100 } ?? perDevice / 1e9)
            }
            return LineChart.Series(name: run.name, points: points, color: color(index))
        }
        if peakFLOPs != nil {
            add("Model FLOPs utilisation", x: "step", y: "MFU (%)", flops)
        } else {
            add("Model FLOP/s per device (MFU needs --peak-tflops)", x: "step", y: "GFLOP/s", flops)
        }
        add("Exposed data-parallel communication", x: "step", y: "seconds per step", perRun("comm_exposed_s"))
        add("Checkpoint stalls", x: "step", y: "seconds", runs.enumerated().map { index, run in
            LineChart.Series(name: run.name, points: run.checkpointStalls.map { ($0.step, $0.seconds) }, color: color(index))
        })
        add("Pipeline bubble (idle share of the step)", x: "step", y: "bubble (%)", perRun("bubble", scale: 100))
        if let trace { charts.append(try RunReport.timeline(trace).svg()) }
        return charts
    }

    /// The last step of a Chrome trace as a timeline, one lane per rank.
    static func timeline(_ file: URL) throws -> TimelineChart {
        guard let data = try? Data(contentsOf: file),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let events = object["traceEvents"] as? [[String: Any]]
        else { throw KeelError("report: \(file.path) is not a Chrome trace from keel train --trace") }
        var laneNames: [Int: String] = [:]
        var spans: [(step: Int, span: TimelineChart.Span)] = []
        for event in events {
            guard let pid = (event["pid"] as? NSNumber)?.intValue else { continue }
            if event["ph"] as? String == "M", let args = event["args"] as? [String: Any], let name = args["name"] as? String {
                laneNames[pid] = name
            }
            guard event["ph"] as? String == "X", let ts = (event["ts"] as? NSNumber)?.doubleValue,
                  let duration = (event["dur"] as? NSNumber)?.doubleValue else { continue }
            let step = ((event["args"] as? [String: Any])?["step"] as? NSNumber)?.intValue ?? 0
            spans.append((step, TimelineChart.Span(lane: pid, start: ts / 1000, end: (ts + duration) / 1000,
                                                   kind: event["cat"] as? String ?? "", name: event["name"] as? String ?? "")))
        }
        guard let last = spans.map(\.step).max() else { throw KeelError("report: \(file.path) has no timed events") }
        // One lane per process that appears, in order: Keel's pids are ranks, another tracer's (PyTorch's) are the
        // system's process ids, which numbered lanes would spread over tens of thousands of empty ones.
        let pids = Set(laneNames.keys).union(spans.map(\.span.lane)).sorted()
        let lane = Dictionary(uniqueKeysWithValues: pids.enumerated().map { ($1, $0) })
        return TimelineChart(title: "Pipeline timeline, step \(last)", laneNames: pids.map { laneNames[$0] ?? "rank \($0)" },
                             spans: spans.filter { $0.step == last }.map {
                                 var span = $0.span
                                 span.lane = lane[span.lane]!
                                 return span
                             }, unit: "ms", width: 2 * RunReport.chartWidth + 20)
    }

    /// Pixel height of the charts-only page (`html(chartsOnly: true)`), for a screenshot of all of it.
    public func chartsPageHeight() throws -> Int {
        let lineCharts = try charts().count - (trace == nil ? 0 : 1)
        let timeline = try trace.map { try RunReport.timeline($0).height } ?? 0
        return 70 + (lineCharts + 1) / 2 * Int(RunReport.chartHeight + 16) + Int(timeline) + 16
    }

    /// The page. With `chartsOnly`, only the title and the charts (what the PNG shows).
    public func html(charts: [String], chartsOnly: Bool = false) -> String {
        let names = runs.map(\.name).joined(separator: ", ")
        var out = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Keel report: \(escape(names))</title>
            <style>
            body { font-family: sans-serif; margin: 16px; color: #222; width: \(Int(2 * RunReport.chartWidth + 40))px; }
            h1 { font-size: 20px; margin: 0 0 12px; } h2 { font-size: 16px; margin: 24px 0 8px; }
            .charts { display: grid; grid-template-columns: repeat(2, \(Int(RunReport.chartWidth))px); gap: 16px 20px; }
            .charts svg.timeline { grid-column: 1 / span 2; }
            table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
            th:first-child, td:first-child { text-align: left; }
            pre { background: #f6f6f6; padding: 8px; font-size: 12px; overflow-x: auto; }
            </style></head>
            <body>
            <h1>Keel run report: \(escape(names))</h1>

            """
        if !chartsOnly { out += summaryTable() }
        out += "<div class=\"charts\">\n" + charts.joined() + "</div>\n"
        if !chartsOnly {
            for run in runs {
                out += "<h2>\(escape(run.name))</h2>\n"
                if let hardware = run.hardware {
                    out += String(format: "<p>Hardware: %@ (%@), %d logical cores, %.1f GB; %d process%@ of %d thread%@.%@</p>\n",
                                  escape(hardware.cpu), escape(hardware.instructionSets.joined(separator: ", ")), hardware.logicalCores,
                                  hardware.memoryBytes / 1e9, hardware.processes, hardware.processes == 1 ? "" : "es",
                                  hardware.threadsPerProcess, hardware.threadsPerProcess == 1 ? "" : "s",
                                  hardware.blas.map { " fp32 products: " + escape($0) + "." } ?? "")
                } else {
                    out += "<p>Hardware: not recorded (hardware.json is written by keel train since this report's version).</p>\n"
                }
                out += "<pre>\(escape(run.configText))</pre>\n"
            }
        }
        out += """
            <script>
            (function () {
              try {
                var charts = document.querySelectorAll('svg.chart'), drawn = 0;
                charts.forEach(function (svg) {
                  var box = svg.getBBox();
                  if (box.width > 0 && box.height > 0 && svg.querySelector('polyline, rect.span')) drawn++;
                });
                document.body.setAttribute('data-charts', String(charts.length));
                document.body.setAttribute('data-drawn', String(drawn));
              } catch (error) {
                document.body.setAttribute('data-error', String(error));
              }
            })();
            </script>
            </body></html>

            """
        return out
    }

    private func summaryTable() -> String {
        var out = "<table><tr><th>run</th><th>steps</th><th>tokens</th><th>last loss</th><th>best validation</th>"
            + "<th>median tokens/s</th><th>elapsed</th><th>model</th></tr>\n"
        for run in runs {
            let last = run.steps.last
            let rates = run.steps.compactMap { $0["tokens_per_s"] }.sorted()
            let model = run.config.map { "\($0.model.architecture.rawValue) \($0.model.layers)×\($0.model.width)" } ?? "?"
            func cell(_ value: Double?, _ format: String) -> String { value.map { String(format: format, $0) } ?? "–" }
            out += "<tr><td>\(escape(run.name))</td><td>\(cell(last?["step"], "%.0f"))</td><td>\(cell(last?["tokens"], "%.0f"))</td>"
                + "<td>\(cell(last?["loss"], "%.4f"))</td><td>\(cell(run.validation.map(\.loss).min(), "%.4f"))</td>"
                + "<td>\(cell(rates.isEmpty ? nil : rates[rates.count / 2], "%.0f"))</td>"
                + "<td>\(cell(last?["elapsed_s"], "%.1f s"))</td><td>\(escape(model))</td></tr>\n"
        }
        return out + "</table>\n"
    }
}

import ArgumentParser
import Foundation
import KeelCore
import KeelReport
import KeelWeb

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a run's report — loss, learning rate, gradient norm, throughput, MFU, communication, checkpoint stalls, pipeline bubble and timeline, config and hardware — as one HTML file (and a PNG).",
        discussion: """
            Several runs are overlaid for comparison. The page is self-contained (charts are inline SVG; it needs \
            no network). --png renders the charts with headless Chromium (Debian's chromium-headless-shell) for \
            papers and READMEs. MFU needs the peak FLOP/s of one device (--peak-tflops); without it the report \
            shows the model FLOP/s each device reached.
            """)

    @Argument(help: "Run directories (each with metrics.jsonl).") var runs: [String]
    @Option(help: "The HTML file to write (default: report.html in the first run's directory).") var out: String?
    @Option(help: "Also write the charts as a PNG here.") var png: String?
    @Option(help: "A Chrome trace from keel train --trace: its last step as the pipeline timeline.") var trace: String?
    @Option(help: "Peak TFLOP/s of one device (process), for MFU.") var peakTflops: Double?
    @Option(help: "Headless Chromium for --png (default: chromium-headless-shell or chromium on PATH).") var chromium: String?

    func validate() throws {
        guard !runs.isEmpty else { throw ValidationError("give at least one run directory") }
        if let peakTflops, !(peakTflops > 0 && peakTflops.isFinite) { throw ValidationError("--peak-tflops must be positive") }
    }

    func run() throws {
        let histories = try runs.map { try RunHistory(directory: URL(fileURLWithPath: $0)) }
        for history in histories where history.steps.isEmpty {
            throw KeelError("report: \(history.directory.path)/metrics.jsonl has no training steps yet")
        }
        let report = RunReport(runs: histories, trace: trace.map { URL(fileURLWithPath: $0) }, peakFLOPs: peakTflops.map { $0 * 1e12 })
        let renderer = try png.map { _ in try PageRenderer(browser: chromium) }   // before any file is written
        let charts = try report.charts()
        let destination = URL(fileURLWithPath: out ?? URL(fileURLWithPath: runs[0]).appendingPathComponent("report.html").path)
        try AtomicFile.write(Data(report.html(charts: charts).utf8), to: destination)
        print("wrote \(destination.path) (\(charts.count) charts, \(histories.count) run\(histories.count == 1 ? "" : "s"))")
        if let png, let renderer {
            let page = FileManager.default.temporaryDirectory.appendingPathComponent("keel-report-\(UUID().uuidString).html")
            defer { try? FileManager.default.removeItem(at: page) }
            try AtomicFile.write(Data(report.html(charts: charts, chartsOnly: true).utf8), to: page)
            let width = RunReport.chartsPageWidth, height = try report.chartsPageHeight()
            if case .failure(let error) = renderer.screenshot(of: page, width: width, height: height, to: URL(fileURLWithPath: png)) {
                throw KeelError("report: --png: \(error.message)")
            }
            print("wrote \(png) (\(width) × \(height) pixels)")
        }
    }
}

import Foundation
import KeelCore
import KeelReport
import KeelTrain
import XCTest

final class RunReportTests: XCTestCase {
    private func run(_ lines: [String], config: String? = nil) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-report-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: directory.appendingPathComponent("metrics.jsonl"))
        if let config { try Data(config.utf8).write(to: directory.appendingPathComponent("config.toml")) }
        return directory
    }

    func testRecordsAreSortedByKind() throws {
        let directory = try run([
            #"{"step": 0, "val_loss": 5.5}"#,
            #"{"step": 1, "loss": 5.4, "lr": 1e-4, "grad_norm": 2.0, "tokens": 512, "tokens_per_s": 1000.0, "elapsed_s": 0.5}"#,
            #"{"step": 2, "loss": 5.1, "lr": 2e-4, "grad_norm": 1.5, "tokens": 1024, "tokens_per_s": 1100.0, "elapsed_s": 1.0, "bubble": 0.25}"#,
            #"{"step": 2, "checkpoint_s": 0.125}"#,
            #"{"step": 2, "val_loss": 5.0}"#,
        ])
        let history = try RunHistory(directory: directory)
        XCTAssertEqual(history.steps.count, 2)
        XCTAssertEqual(history.series("loss").map(\.y), [5.4, 5.1])
        XCTAssertEqual(history.series("loss", against: "tokens").map(\.x), [512, 1024])
        XCTAssertEqual(history.series("bubble").map(\.x), [2], "only records that have the field")
        XCTAssertEqual(history.validation.map(\.loss), [5.5, 5.0])
        XCTAssertEqual(history.validationByTokens.map(\.x), [0, 1024])
        XCTAssertEqual(history.checkpointStalls.map(\.seconds), [0.125])
        XCTAssertNil(history.config, "no config.toml: the report goes on without it")
    }

    /// Validation points are placed by tokens only where a training record of their step counts them: a DPO or reward
    /// run logs no tokens (its points were all drawn at 0), and a validation without its step's record is left out.
    func testValidationIsPlacedByTokensOnlyWhereTheyAreKnown() throws {
        let untokened = try RunHistory(directory: run([#"{"step": 0, "val_loss": 0.69}"#, #"{"step": 1, "loss": 0.6}"#,
                                                       #"{"step": 1, "val_loss": 0.65}"#]))
        XCTAssertEqual(untokened.validationByTokens.count, 0)
        let gap = try RunHistory(directory: run([#"{"step": 0, "val_loss": 5.5}"#, #"{"step": 1, "loss": 5.4, "tokens": 512}"#,
                                                 #"{"step": 1, "val_loss": 5.3}"#, #"{"step": 3, "val_loss": 5.0}"#]))
        XCTAssertEqual(gap.validationByTokens.map(\.x), [0, 512])
    }

    /// A timeline has one lane per process that appears, whatever its pid: another tracer's system pids (48213) once
    /// made tens of thousands of empty lanes.
    func testTimelineLanesAreTheProcessesThatAppear() throws {
        let history = try RunHistory(directory: run([#"{"step": 1, "loss": 5.4, "tokens": 512}"#]))
        func height(pids: [Int]) throws -> Int {
            let events = pids.map { #"{"ph": "X", "pid": \#($0), "ts": 0, "dur": 1000, "cat": "forward", "name": "F0", "args": {"step": 1}}"# }
            let trace = FileManager.default.temporaryDirectory.appendingPathComponent("keel-trace-\(UUID().uuidString).json")
            addTeardownBlock { try? FileManager.default.removeItem(at: trace) }
            try Data(#"{"traceEvents": [\#(events.joined(separator: ", "))]}"#.utf8).write(to: trace)
            return try RunReport(runs: [history], trace: trace).chartsPageHeight()
        }
        XCTAssertEqual(try height(pids: [48213, 48214]), try height(pids: [0, 1]))
        XCTAssertLessThan(try height(pids: [0, 1]), try height(pids: [0, 1, 2]))
    }

    /// Charts only for what the runs logged; the page carries them, escaped text, and the drawing check.
    func testPageHasTheChartsWithData() throws {
        let a = try run([#"{"step": 1, "loss": 5.4, "lr": 1e-4, "grad_norm": 2.0, "tokens": 512, "tokens_per_s": 1000.0, "elapsed_s": 0.5}"#],
                        config: "[model]\nn_layer = 1 # <script>\n[parallel]\ndp = 1\n")
        let report = RunReport(runs: [try RunHistory(directory: a)])
        let charts = try report.charts()
        // loss, loss against tokens, lr, grad norm, throughput, model FLOP/s (the config counts them, and its layout
        // the devices; no peak, so no MFU); no communication, checkpoint or bubble charts: nothing logged them.
        XCTAssertEqual(charts.count, 6)
        let page = report.html(charts: charts)
        XCTAssertEqual(page.components(separatedBy: "<svg ").count - 1, 6)
        XCTAssertTrue(page.contains("Model FLOP/s per device"))
        XCTAssertFalse(page.contains("Pipeline bubble"))
        XCTAssertTrue(page.contains("# &lt;script&gt;"), "config text is escaped")
        XCTAssertTrue(page.contains("data-drawn"))
        XCTAssertFalse(report.html(charts: charts, chartsOnly: true).contains("<pre>"))
    }

    /// The metrics endpoint's values: a newer record of a kind drops the fields it does not repeat (a snapshot's
    /// `in_memory` does not outlive it), other kinds' fields stay.
    func testNewestValuesForgetWhatARecordKindStoppedWriting() throws {
        let directory = try run([])
        let log = try MetricsLog(url: directory.appendingPathComponent("metrics.jsonl"), keepingThrough: nil)
        try log.write(["step": .int(1), "loss": .float(2.5), "lr": .double(1e-3)])
        try log.write(["step": .int(1), "checkpoint_s": .double(0.5), "in_memory": .int(1)])
        try log.write(["step": .int(2), "loss": .float(2.25), "lr": .double(2e-3)])
        try log.write(["step": .int(2), "checkpoint_s": .double(0.25)])
        let latest = log.latestValues()
        XCTAssertEqual(latest["step"], 2)
        XCTAssertEqual(latest["loss"], 2.25)
        XCTAssertEqual(latest["checkpoint_s"], 0.25)
        XCTAssertNil(latest["in_memory"])
    }

    /// A last line cut short (a run stopped mid-write, or still writing) is left out; the same line within the file,
    /// or ended by its line break, is an error.
    func testUnfinishedLastLineIsLeftOut() throws {
        let directory = try run([#"{"step": 1, "loss": 5.4}"#])
        let metrics = directory.appendingPathComponent("metrics.jsonl")
        try Data((#"{"step": 1, "loss": 5.4}"# + "\n" + #"{"step": 2, "lo"#).utf8).write(to: metrics)
        XCTAssertEqual(try RunHistory(directory: directory).steps.count, 1)
        try Data((#"{"step": 1, "loss": 5.4}"# + "\n" + #"{"step": 2, "lo"# + "\n").utf8).write(to: metrics)
        XCTAssertThrowsError(try RunHistory(directory: directory)) { XCTAssertTrue("\($0)".contains("metrics.jsonl:2"), "\($0)") }
    }

    /// Without hardware.json, the devices are the config's layout only when it gives dp: a data-parallel run that
    /// left dp to the launcher has an unknown count, and no per-device FLOP/s are drawn rather than dp× too many.
    func testDevicesAreUnknownWithoutDataParallelSize() throws {
        let record = #"{"step": 1, "loss": 5.4, "tokens": 512, "tokens_per_s": 1000.0}"#
        let model = "[model]\nn_layer = 1\nn_head = 2\nd_model = 16\nmax_seq_len = 16\n"
        XCTAssertNil(try RunHistory(directory: run([record], config: model + "[parallel]\ntp = 1\n")).devices)
        XCTAssertEqual(try RunHistory(directory: run([record], config: model + "[parallel]\ndp = 4\n")).devices, 4)
    }

    func testBadMetricsAreNamed() throws {
        let directory = try run([#"{"step": 1, "loss": 5.4}"#, "not json"])
        XCTAssertThrowsError(try RunHistory(directory: directory)) {
            XCTAssertTrue("\($0)".contains("metrics.jsonl:2"), "\($0)")
        }
        XCTAssertThrowsError(try RunHistory(directory: directory.appendingPathComponent("nope"))) {
            XCTAssertTrue("\($0)".contains("is "), "\($0)")
        }
    }
}

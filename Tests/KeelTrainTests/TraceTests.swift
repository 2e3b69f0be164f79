import Foundation
import KeelTrain
import XCTest

/// `keel train --trace`: the executor's timeline of every step, as a Chrome trace.
final class TraceTests: XCTestCase {
    /// One process, two micro-batches a step, three steps: each step's F0 F1 B1 B0 (GPipe) appear once, in the order
    /// they ran, without overlapping, inside the run.
    func testTraceHoldsEveryPassOfEveryStepInOrder() throws {
        let fixture = try TrainFixture()
        let config = try fixture.config(["training.steps=3", "training.grad_accum=2", "parallel.schedule=\"gpipe\""])
        let trace = fixture.root.appendingPathComponent("trace.json")
        _ = try Trainer(config: config, output: fixture.root.appendingPathComponent("run"), resume: false) { _ in }
            .run(trace: trace)

        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: trace)) as? [String: Any])
        let events = try XCTUnwrap(root["traceEvents"] as? [[String: Any]])
        let names = events.filter { $0["ph"] as? String == "M" }.compactMap { ($0["args"] as? [String: Any])?["name"] as? String }
        XCTAssertEqual(names, ["rank 0: stage 0, replica 0"])
        let slices = events.filter { $0["ph"] as? String == "X" }
        XCTAssertEqual(slices.map { $0["name"] as! String }, Array(repeating: ["F0", "F1", "B1", "B0"], count: 3).flatMap { $0 })
        XCTAssertEqual(slices.map { ($0["args"] as! [String: Any])["step"] as! Int }, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])
        var end = 0.0
        for slice in slices {
            let start = slice["ts"] as! Double, duration = slice["dur"] as! Double
            // Times are printed to the nanosecond, so start and end may each be rounded.
            XCTAssertGreaterThanOrEqual(start + 0.002, end, "\(slice) starts before the previous pass ended")
            XCTAssertGreaterThan(duration, 0)
            end = start + duration
        }
    }
}

import KeelPlan
import XCTest

/// The planner against published per-GPU throughput, with the one calibration constant for every row.
final class PublishedRunsTests: XCTestCase {
    func testEveryPublishedRunWithinFifteenPercent() throws {
        for run in PublishedRun.all {
            let (best, predicted) = try run.predicted()
            let error = predicted / run.flopsPerDevice - 1
            print(String(format: "%@: predicted %.1f, published %.1f TFLOP/s (%+.1f%%) with %@", run.name,
                         predicted / 1e12, run.flopsPerDevice / 1e12, error * 100, best.layout.name))
            if run.source.hasPrefix("Narayanan") { XCTAssertTrue(best.fits, "\(run.name): \(best.memory.total / 1e9) GB") }
            XCTAssertLessThan(abs(error), 0.15, run.name)
        }
    }
}

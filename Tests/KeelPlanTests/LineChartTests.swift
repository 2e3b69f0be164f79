import KeelPlot
import XCTest

final class LineChartTests: XCTestCase {
    func testTicksAreRoundAndCoverTheRange() {
        XCTAssertEqual(LineChart.niceTicks(0, 47), [0, 10, 20, 30, 40, 50])
        XCTAssertEqual(LineChart.niceTicks(2.13, 2.71), [2.0, 2.2, 2.4, 2.6, 2.8], accuracy: 1e-9)
        XCTAssertEqual(LineChart.label(16384), "16384")
        XCTAssertEqual(LineChart.label(2_500_000), "2.5M")
        XCTAssertEqual(LineChart.label(200_000), "200k")
        XCTAssertEqual(LineChart.label(0.0125), "0.0125")
        // Beyond Int's range (a diverging run's gradient norm): still a label, not a trap.
        XCTAssertEqual(LineChart.label(1e28), "1e+28")
        XCTAssertEqual(LineChart.label(-2.5e20), "-2.5e+20")
        XCTAssertEqual(LineChart.label(.infinity), "inf")
        let svg = LineChart(title: "t", xLabel: "step", yLabel: "grad norm", series: [.init(name: "a", points: [(0, 3), (1, 1e28)])]).svg()
        XCTAssertTrue(svg.contains("<polyline"))
    }

    func testSVGHasOneLinePerSeriesAndEscapesNames() {
        let chart = LineChart(title: "loss <a&b>", xLabel: "step", yLabel: "loss", series: [
            .init(name: "run \"a\"", points: [(0, 3), (1, 2.5), (2, 2.1)]),
            .init(name: "b", points: [(0, 3.1), (2, .nan), (3, 2.0)], dashed: true),
        ])
        let svg = chart.svg()
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 2)
        XCTAssertTrue(svg.contains("loss &lt;a&amp;b&gt;"))
        XCTAssertTrue(svg.contains("run &quot;a&quot;"))
        XCTAssertFalse(svg.contains("nan"), "non-finite points are left out")
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 5)
        XCTAssertTrue(LineChart(title: "t", xLabel: "x", yLabel: "y", series: []).svg().contains("no data"))
    }

    /// 5,000 points become 1,000 means of 5 consecutive ones.
    func testLongSeriesAreAveragedInBuckets() {
        let points = (0..<5000).map { (x: Double($0), y: Double($0 % 5)) }
        let thinned = LineChart.thinned(points)
        XCTAssertEqual(thinned.count, 1000)
        XCTAssertEqual(thinned[0].x, 2)
        XCTAssertEqual(thinned[0].y, 2)
        XCTAssertEqual(thinned[999].x, 4997)
        XCTAssertEqual(LineChart.thinned(Array(points.prefix(2000))).count, 2000)
    }
}

private func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(a) vs \(b)", file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, "\(a) vs \(b)", file: file, line: line) }
}

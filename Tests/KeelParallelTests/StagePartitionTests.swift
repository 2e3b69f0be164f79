import KeelCore
import KeelModel
import XCTest
@testable import KeelParallel

final class StagePartitionTests: XCTestCase {
    /// The cut is contiguous, covers every block once, and no other cut stores fewer parameters on its largest
    /// stage (checked against every possible cut).
    func testBalancedCutIsTheBestCut() throws {
        for architecture in Architecture.allCases {
            let config = ModelConfig(architecture: architecture, vocabSize: 500, layers: 7, heads: 2,
                                     kvHeads: architecture == .llama ? 1 : nil, width: 16, maxLength: 8)
            // What a stage stores, counted independently of the partition's own arithmetic.
            func cost(_ layers: Range<Int>) -> Int { ParameterTable(config: config, layers: layers).count }
            for stages in 1...config.layers {
                let ranges = try StagePartition.balanced(config, stages: stages)
                XCTAssertEqual(ranges.count, stages)
                XCTAssertEqual(ranges.first?.lowerBound, 0)
                XCTAssertEqual(ranges.last?.upperBound, config.layers)
                XCTAssertTrue(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound && !$1.isEmpty })
                let largest = ranges.map(cost).max()!
                // Every way to choose stages − 1 cut points among the 6 gaps.
                var bestPossible = Int.max
                for mask in 0..<(1 << (config.layers - 1)) where mask.nonzeroBitCount == stages - 1 {
                    let cuts = (1..<config.layers).filter { mask & (1 << ($0 - 1)) != 0 }
                    let bounds = [0] + cuts + [config.layers]
                    bestPossible = min(bestPossible, zip(bounds, bounds.dropFirst()).map { cost($0..<$1) }.max()!)
                }
                XCTAssertEqual(largest, bestPossible, "\(architecture), \(stages) stages: \(ranges)")
            }
        }
    }

    func testMoreStagesThanLayersIsRefused() {
        let config = ModelConfig(architecture: .gpt2, vocabSize: 50, layers: 2, heads: 2, width: 16, maxLength: 8)
        XCTAssertThrowsError(try StagePartition.balanced(config, stages: 3)) {
            XCTAssertTrue("\($0)".contains("3 pipeline stages need at least as many layers (model.n_layer is 2)"), "\($0)")
        }
    }
}

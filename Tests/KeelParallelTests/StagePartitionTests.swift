import KeelCore
import KeelModel
import XCTest
@testable import KeelParallel

final class StagePartitionTests: XCTestCase {
    /// The cut is contiguous, covers every block once, and no other cut has a smaller largest stage, by either
    /// measure (checked against every possible cut).
    func testBalancedCutIsTheBestCut() throws {
        for architecture in Architecture.allCases {
            let config = ModelConfig(architecture: architecture, vocabSize: 500, layers: 7, heads: 2,
                                     kvHeads: architecture == .llama ? 1 : nil, width: 16, maxLength: 8)
            // Counted independently of the partition's own arithmetic: what a stage stores, and its FLOPs per token
            // (a middle block's parameters twice and attention over 8 positions; the head's projection on the last).
            let block = ParameterTable(config: config, layers: 1..<2).count
            let measures: [(StageBalance, (Range<Int>) -> Int)] = [
                (.parameters, { ParameterTable(config: config, layers: $0).count }),
                (.compute, { $0.count * (2 * block + 4 * 8 * 16) + ($0.upperBound == config.layers ? 2 * 16 * 500 : 0) }),
                (.layers, { $0.count }),
            ]
            for (balance, cost) in measures {
                for stages in 1...config.layers {
                    let ranges = try StagePartition.balanced(config, stages: stages, by: balance, sequenceLength: 8)
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
                    XCTAssertEqual(largest, bestPossible, "\(architecture), \(balance), \(stages) stages: \(ranges)")
                }
            }
        }
    }

    /// GPT-2 124M on two stages. By parameters the embedding (39.4M) and the head's copy of the token table (38.6M)
    /// weigh alike: 6 blocks each. By compute (17.3M FLOPs per token per block at T = 1024, the head's projection
    /// 77.2M) the last stage takes 4 blocks: 146.5M against 138.6M, where 6 and 6 would be 181.1M against 103.9M.
    func testComputeBalanceGivesTheLastStageFewerBlocks() throws {
        let config = ModelConfig(architecture: .gpt2, vocabSize: 50257, layers: 12, heads: 12, width: 768, maxLength: 1024)
        XCTAssertEqual(try StagePartition.balanced(config, stages: 2, by: .parameters, sequenceLength: 1024), [0..<6, 6..<12])
        XCTAssertEqual(try StagePartition.balanced(config, stages: 2, by: .compute, sequenceLength: 1024), [0..<8, 8..<12])
        XCTAssertEqual(try StagePartition.balanced(config, stages: 5, by: .layers, sequenceLength: 1024).map(\.count).max(), 3, "⌈12 / 5⌉")
    }

    func testMoreStagesThanLayersIsRefused() {
        let config = ModelConfig(architecture: .gpt2, vocabSize: 50, layers: 2, heads: 2, width: 16, maxLength: 8)
        XCTAssertThrowsError(try StagePartition.balanced(config, stages: 3, sequenceLength: 8)) {
            XCTAssertTrue("\($0)".contains("3 pipeline stages need at least as many layers (model.n_layer is 2)"), "\($0)")
        }
    }
}

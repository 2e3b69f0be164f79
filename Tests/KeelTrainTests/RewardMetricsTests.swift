import Foundation
import KeelTrain
import XCTest

/// Reward-model metrics against NumPy (Tests/Reference/reward_metrics.py) on scores with ties, and the cases a
/// reader can check by hand.
final class RewardMetricsTests: XCTestCase {
    func testMetricsEqualTheNumPyReference() throws {
        var random = SystemRandomNumberGenerator()
        let n = 300
        // Scores rounded to tenths, so that ranks tie; the second model is the first plus noise.
        let chosen = (0..<n).map { _ in (Double.random(in: -2...3, using: &random) * 10).rounded() / 10 }
        let rejected = (0..<n).map { _ in (Double.random(in: -3...2, using: &random) * 10).rounded() / 10 }
        let chosen2 = chosen.map { $0 + Double.random(in: -1...1, using: &random) }
        let rejected2 = rejected.map { $0 + Double.random(in: -1...1, using: &random) }
        let chosenLengths = (0..<n).map { _ in Int.random(in: 5...200, using: &random) }
        let rejectedLengths = (0..<n).map { _ in Int.random(in: 5...200, using: &random) }
        let output = try PythonReference.run("reward_metrics.py", input: try JSONSerialization.data(withJSONObject: [
            "chosen": chosen, "rejected": rejected, "chosen2": chosen2, "rejected2": rejected2,
            "chosen_lengths": chosenLengths, "rejected_lengths": rejectedLengths,
        ]))
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(with: output) as? [String: Double])
        XCTAssertEqual(RewardMetrics.pairwiseAccuracy(chosen: chosen, rejected: rejected), expected["accuracy"]!, accuracy: 1e-12)
        XCTAssertEqual(RewardMetrics.expectedCalibrationError(chosen: chosen, rejected: rejected), expected["ece"]!, accuracy: 1e-12)
        XCTAssertEqual(RewardMetrics.pairwiseAgreement(first: (chosen, rejected), second: (chosen2, rejected2)),
                       expected["agreement"]!, accuracy: 1e-12)
        XCTAssertEqual(RewardMetrics.spearman(chosen + rejected, chosen2 + rejected2), expected["spearman"]!, accuracy: 1e-12)
        let length = RewardMetrics.lengthSensitivity(chosen: chosen, rejected: rejected, chosenLengths: chosenLengths,
                                                     rejectedLengths: rejectedLengths)
        XCTAssertEqual(length.correlation, expected["length_correlation"]!, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(length.accuracyWhenChosenIsShorter), expected["accuracy_shorter"]!, accuracy: 1e-12)
    }

    func testCasesByHand() {
        XCTAssertEqual(RewardMetrics.pairwiseAccuracy(chosen: [1, 2, 3, 0], rejected: [0, 2, 4, -1]), 0.5, "a tie is wrong")
        XCTAssertEqual(RewardMetrics.ranks([3, 1, 3, 2]), [3.5, 1, 3.5, 2])
        XCTAssertEqual(RewardMetrics.spearman([1, 2, 3], [10, 20, 30]), 1, accuracy: 1e-12)
        // A model that rewards only length: perfectly correlated with it, and wrong whenever the chosen is shorter.
        let length = RewardMetrics.lengthSensitivity(chosen: [5, 1], rejected: [2, 3], chosenLengths: [5, 1], rejectedLengths: [2, 3])
        XCTAssertEqual(length.correlation, 1, accuracy: 1e-12)
        XCTAssertEqual(length.accuracyWhenChosenIsShorter, 0)
        // Confident and right in every pair: calibration error 1 − confidence.
        let ece = RewardMetrics.expectedCalibrationError(chosen: [10, 10], rejected: [0, 0])
        XCTAssertEqual(ece, 1 - 1 / (1 + exp(-10)), accuracy: 1e-12)
    }
}

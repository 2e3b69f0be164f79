import Foundation
@testable import KeelTrain
import XCTest

/// What a run that diverged says: the first of loss and gradient norm that is not finite, "NaN" or "infinite", the
/// step, and the checkpoint to go back to, marked as an error that resuming would meet again.
final class TrainingDivergedTests: XCTestCase {
    func testTheReasonNamesTheFirstValueThatIsNotFinite() {
        let cases: [(loss: Double, norm: Double, reason: String)] = [
            (.nan, 1, "loss is NaN"), (.infinity, .nan, "loss is infinite"), (-.infinity, 1, "loss is infinite"),
            (2, .nan, "gradient norm is NaN"), (2, .infinity, "gradient norm is infinite"),
        ]
        for (loss, norm, reason) in cases {
            XCTAssertEqual("\(TrainingDiverged(step: 7, loss: loss, norm: norm))", "training diverged: \(reason) at step 7")
        }
    }

    func testTheReportNamesTheLastCheckpointAndRulesOutARestart() {
        let diverged = TrainingDiverged(step: 3, loss: .nan, norm: 1)
        let kept = diverged.reported(lastCheckpoint: URL(fileURLWithPath: "/runs/a/checkpoints/step_00000002"))
        XCTAssertEqual(kept.message, "training diverged: loss is NaN at step 3; the last good checkpoint is /runs/a/checkpoints/step_00000002")
        XCTAssertTrue(kept.rulesOutRestart)
        XCTAssertEqual(diverged.reported(lastCheckpoint: nil).message, "training diverged: loss is NaN at step 3; no checkpoint was written")
    }
}

import Foundation
import KeelKernels
import XCTest

/// The Bradley–Terry, DPO and IPO losses against NumPy written as TRL writes them (Tests/Reference/
/// preference_losses.py): losses to 1e-12 relative, derivatives against central differences, over ordinary pairs
/// and ones far in the tails (where a naive log σ overflows).
final class PreferenceLossTests: XCTestCase {
    private struct Case: Codable {
        var kind: String
        var chosen = 0.0, rejected = 0.0, margin = 0.0, centering = 0.0
        var pc = 0.0, pr = 0.0, rc = 0.0, rr = 0.0, beta = 0.1, smoothing = 0.0
    }

    private struct Result: Codable {
        var loss: Double
        var d_chosen: Double
        var d_rejected: Double
        var chosen_reward: Double?
        var rejected_reward: Double?
    }

    func testLossesAndGradientsEqualTheNumPyReference() throws {
        var random = SystemRandomNumberGenerator()
        var cases: [Case] = []
        for index in 0..<40 {
            let scale = index % 4 == 3 ? 60.0 : 3.0 // every fourth far in the tails
            let value = { Double.random(in: -scale...scale, using: &random) }
            cases.append(Case(kind: "bt", chosen: value(), rejected: value(), margin: index % 2 == 0 ? 0 : 0.5,
                              centering: index % 3 == 0 ? 0.01 : 0))
            for kind in ["sigmoid", "ipo"] {
                cases.append(Case(kind: kind, pc: -20 + value(), pr: -20 + value(), rc: -20 + value(), rr: -20 + value(),
                                  beta: [0.1, 0.5, 1][index % 3], smoothing: kind == "sigmoid" && index % 2 == 1 ? 0.1 : 0))
            }
        }
        let output = try PythonReference.run("preference_losses.py", input: try JSONEncoder().encode(cases))
        let expected = try JSONDecoder().decode([Result].self, from: output)
        XCTAssertEqual(expected.count, cases.count)
        for (item, reference) in zip(cases, expected) {
            let label = "\(item)"
            let ours: (loss: Double, dChosen: Double, dRejected: Double, rewards: (Double, Double)?)
            if item.kind == "bt" {
                let r = PreferenceLoss.bradleyTerry(chosen: item.chosen, rejected: item.rejected, margin: item.margin,
                                                    centering: item.centering)
                ours = (r.loss, r.dChosen, r.dRejected, nil)
            } else {
                let r = PreferenceLoss.preference(PreferenceLoss.Objective(rawValue: item.kind)!, policyChosen: item.pc,
                                                  policyRejected: item.pr, referenceChosen: item.rc, referenceRejected: item.rr,
                                                  beta: item.beta, labelSmoothing: item.smoothing)
                ours = (r.loss, r.dChosen, r.dRejected, (r.chosenReward, r.rejectedReward))
            }
            XCTAssertTrue(ours.loss.isFinite, label)
            XCTAssertEqual(ours.loss, reference.loss, accuracy: 1e-12 * max(1, abs(reference.loss)), label)
            XCTAssertEqual(ours.dChosen, reference.d_chosen, accuracy: 1e-5 * max(1, abs(reference.d_chosen)), label)
            XCTAssertEqual(ours.dRejected, reference.d_rejected, accuracy: 1e-5 * max(1, abs(reference.d_rejected)), label)
            if let (chosen, rejected) = ours.rewards {
                XCTAssertEqual(chosen, reference.chosen_reward!, accuracy: 1e-12, label)
                XCTAssertEqual(rejected, reference.rejected_reward!, accuracy: 1e-12, label)
            }
        }
    }
}

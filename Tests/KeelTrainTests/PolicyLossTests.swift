import Foundation
import KeelKernels
import XCTest

/// GRPO's per-token loss (clipped surrogate and KL penalty) and its group-normalised advantages against NumPy written
/// as TRL writes them (Tests/Reference/policy_loss.py): losses to 1e-12, derivatives against central differences, the
/// clipping decided alike, over ratios inside and outside the clip range, positive and negative advantages.
final class PolicyLossTests: XCTestCase {
    private struct Case: Codable {
        var kind: String
        var lp = 0.0, old = 0.0, ref: Double? = nil, adv = 0.0, eps = 0.2, beta = 0.0
        var rewards: [Double]? = nil, group: Int? = nil
    }

    private struct Result: Codable {
        var loss: Double?, derivative: Double?, clipped: Bool?
        var advantages: [Double]?, spreads: [Double]?
    }

    func testTokenLossesAndAdvantagesEqualTheNumPyReference() throws {
        var random = SystemRandomNumberGenerator()
        var cases: [Case] = []
        for index in 0..<60 {
            let old = -Double.random(in: 0.1...6, using: &random)
            // Ratios from 0.5 to 1.6: inside and outside [1 − ε, 1 + ε].
            let lp = old + Double.random(in: -0.7...0.5, using: &random)
            cases.append(Case(kind: "token", lp: lp, old: old, ref: index % 3 == 0 ? nil : old + Double.random(in: -1...1, using: &random),
                              adv: Double.random(in: -2...2, using: &random), eps: [0.2, 0.1][index % 2],
                              beta: index % 3 == 0 ? 0 : [0.04, 0.2][index % 2]))
        }
        let rewards: [Double] = [1, 0, 0, 1, 1, 1, 1, 1, 0.5, 0, 0.25, 1]
        cases.append(Case(kind: "advantages", rewards: rewards, group: 4))
        let output = try PythonReference.run("policy_loss.py", input: try JSONEncoder().encode(cases))
        let expected = try JSONDecoder().decode([Result].self, from: output)
        XCTAssertEqual(expected.count, cases.count)
        var clippedSeen = 0
        for (item, reference) in zip(cases, expected) where item.kind == "token" {
            let ours = PolicyLoss.clippedSurrogate(logProbability: item.lp, old: item.old, reference: item.ref, advantage: item.adv,
                                                   epsilon: item.eps, beta: item.beta)
            XCTAssertEqual(ours.loss, reference.loss!, accuracy: 1e-12 * max(1, abs(reference.loss!)), "\(item)")
            XCTAssertEqual(ours.derivative, reference.derivative!, accuracy: 1e-6 * max(1, abs(reference.derivative!)), "\(item)")
            XCTAssertEqual(ours.clipped, reference.clipped!, "\(item)")
            clippedSeen += ours.clipped ? 1 : 0
        }
        XCTAssertGreaterThan(clippedSeen, 0, "no case was clipped: the cases do not test clipping")
        let ours = PolicyLoss.groupAdvantages(rewards, groupSize: 4)
        for (a, b) in zip(ours.advantages, expected.last!.advantages!) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        XCTAssertEqual(ours.spreads.count, 3)
        for (a, b) in zip(ours.spreads, expected.last!.spreads!) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        // A group whose rewards are all equal gives no advantage: it teaches nothing.
        XCTAssertEqual(Array(ours.advantages[4..<8]), [0, 0, 0, 0])
    }
}

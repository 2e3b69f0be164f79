@testable import KeelPlan
import KeelParallel
import XCTest

/// The planner's shortcuts through the schedule simulator give the simulator's own answers.
final class PipelineTimingTests: XCTestCase {
    private let shapes: [(PipelineSchedule, Int, Int, Int)] = [
        (.oneForwardOneBackward, 4, 1, 37), (.interleaved, 4, 2, 40), (.zeroBubbleH1, 3, 1, 29), (.gpipe, 3, 1, 31),
        (.interleaved, 2, 4, 18),
        // The shapes of the published runs: Llama 3's pp 16 with 8 chunks, Megatron-LM's pp 64 with 2.
        (.interleaved, 16, 8, 96), (.interleaved, 64, 2, 320),
    ]

    /// Beyond 4p micro-batches the step is extrapolated from two short simulations: it equals the full one.
    func testExtrapolatedStepEqualsFullSimulation() throws {
        let costs = ScheduleCosts(forward: 1.0, backwardInput: 1.3, backwardWeight: 0.9, transfer: 0.15)
        for (schedule, p, v, m) in shapes {
            var split = costs
            if schedule != .zeroBubbleH1 { split = ScheduleCosts(forward: 1, backwardInput: 2.2, backwardWeight: 0, transfer: 0.15) }
            let lists = try (0..<p).map { try schedule.actions(stages: p, virtualStages: v, microBatches: m, rank: $0) }
            let full = try ScheduleSimulator.run(lists, costs: split)
            let step = try PipelineTiming.step(schedule, stages: p, virtualStages: v, microBatches: m, costs: split)
            XCTAssertEqual(step, full.stepTime, accuracy: full.stepTime * 1e-12, "\(schedule) p \(p) v \(v) m \(m)")
            let held = try PipelineTiming.heldActivations(schedule, stages: p, virtualStages: v, microBatches: m)
            XCTAssertEqual(held.slots, full.peakInFlight, "\(schedule) p \(p) v \(v) m \(m)")
            // Only ZB-H1 splits backwards: at its peak rank r waits with the r W passes it holds back and the one
            // whose B just ran.
            XCTAssertEqual(held.awaitingWeights, (0..<p).map { schedule == .zeroBubbleH1 ? $0 + 1 : 0 },
                           "\(schedule) p \(p) v \(v) m \(m)")
        }
    }
}

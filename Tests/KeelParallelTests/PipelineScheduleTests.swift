import KeelComm
import KeelCore
import XCTest
@testable import KeelParallel

/// Pipeline schedules as data: over a grid of shapes every schedule is valid and deadlock-free, holds as many
/// activations as theory says and idles as long as the published formulas say; the validator catches broken
/// hand-made schedules and `actions` rejects shapes a schedule does not support.
final class PipelineScheduleTests: XCTestCase {
    /// One pipeline shape for one schedule.
    private struct Shape: Sendable, CustomStringConvertible {
        let schedule: PipelineSchedule
        let p: Int
        let v: Int
        let m: Int

        var description: String { "\(schedule.rawValue) p=\(p) v=\(v) m=\(m)" }

        func actions() throws -> [[PipelineAction]] {
            try (0..<p).map { try schedule.actions(stages: p, virtualStages: v, microBatches: m, rank: $0) }
        }

        /// Forward, B and W each cost 1/v: a whole stage's forward costs 1 and its backward 2.
        func simulate() throws -> ScheduleSimulator.Simulation {
            let unit = 1 / Double(v)
            return try ScheduleSimulator.run(actions(), costs: ScheduleCosts(forward: unit, backwardInput: unit,
                                                                             backwardWeight: unit))
        }
    }

    /// p ∈ 1…8 and m ∈ p…4p; interleaved takes v ∈ 2…4 and multiples of p only, the others v = 1.
    private static let grid: [Shape] = PipelineSchedule.allCases.flatMap { schedule in
        (1...8).flatMap { p in
            let interleaved = schedule == .interleaved
            return (interleaved ? Array(2...4) : [1]).flatMap { v in
                stride(from: p, through: 4 * p, by: interleaved ? p : 1).map {
                    Shape(schedule: schedule, p: p, v: v, m: $0)
                }
            }
        }
    }

    private static func shapes(_ schedule: PipelineSchedule) -> [Shape] { grid.filter { $0.schedule == schedule } }

    func testEveryScheduleOfTheGridIsValidAndRunsToTheEnd() throws {
        // 116 shapes for each v = 1 schedule, 8 × 3 × 4 for interleaved.
        XCTAssertEqual(Self.grid.count, 3 * 116 + 96)
        for shape in Self.grid {
            let actions = try shape.actions()
            XCTAssertNoThrow(try ScheduleValidator.validate(actions, stages: shape.p, virtualStages: shape.v,
                                                            microBatches: shape.m), "\(shape)")
            let simulation = try shape.simulate()
            XCTAssertEqual(simulation.timelines.map(\.count), actions.map(\.count), "\(shape)")
        }
    }

    func testPeakActivationsMatchTheory() throws {
        for shape in Self.grid {
            let (p, v, m) = (shape.p, shape.v, shape.m)
            let expected = (0..<p).map { rank in
                switch shape.schedule {
                case .gpipe:
                    m
                case .oneForwardOneBackward:
                    min(p - rank, m)
                case .zeroBubbleH1:
                    // Rank r holds its first r W passes back: with them, p micro-batches' activations on every rank.
                    min(p, m)
                case .interleaved:
                    // Megatron's warm-up forwards plus the first steady-state one, counted in chunks (each holds
                    // 1/v of a stage's activations). Rank 0 holds (v + 1)p − 1 chunks, p + (p − 1)/v stages' worth
                    // against 1F1B's p: the Megatron-LM paper's factor 1 + (p − 1)/(p·v).
                    min((p - rank - 1) * 2 + (v - 1) * p + 1, m * v)
                }
            }
            XCTAssertEqual(try shape.simulate().peakInFlight, expected, "\(shape)")
        }
    }

    func testSimulatedBubbleMatchesThePublishedFormula() throws {
        for shape in Self.grid where shape.schedule != .zeroBubbleH1 {
            let formula = ScheduleSimulator.bubbleFormula(shape.schedule, stages: shape.p, virtualStages: shape.v,
                                                          microBatches: shape.m)
            XCTAssertEqual(try shape.simulate().bubbleFraction, formula, accuracy: 1e-9, "\(shape)")
        }
    }

    /// With F = B = W = 1 every rank of ZB-H1 idles p − 1 units against 1F1B's 3(p − 1): a third of the idle
    /// time. Its bubble fraction is (p − 1)/(3m + p − 1), the least any schedule can reach (the last rank
    /// starts after p − 1 forwards), and the ratio of fractions is exactly (m + p − 1)/(3m + p − 1), larger
    /// than a third because ZB-H1's step is also shorter. That ratio is at most 0.4 only for m ≥ 3(p − 1):
    /// measured 0.3846 at p = 2, m = 4; 0.4 at p = 3, m = 6; 0.4074 at p = 4, m = 8; 0.3725 at p = 4, m = 16;
    /// 0.4182 (23/55, the largest for m ≥ 2p in the grid) at p = 8, m = 16; 0.3786 at p = 8, m = 32.
    func testZeroBubbleH1IdlesAThirdAsLongAsOneForwardOneBackward() throws {
        for shape in Self.shapes(.zeroBubbleH1) {
            let (p, m) = (Double(shape.p), Double(shape.m))
            let zeroBubble = try shape.simulate()
            XCTAssertEqual(zeroBubble.stepTime, 3 * m + p - 1, accuracy: 1e-9, "\(shape)")
            XCTAssertEqual(zeroBubble.bubbleFraction, ScheduleSimulator.bubbleFormula(.zeroBubbleH1, stages: shape.p,
                           virtualStages: 1, microBatches: shape.m), accuracy: 1e-9, "\(shape)")
            guard shape.p >= 2, shape.m >= 2 * shape.p else { continue }
            let oneForwardOneBackward = try Shape(schedule: .oneForwardOneBackward, p: shape.p, v: 1,
                                                  m: shape.m).simulate()
            func idleTimes(_ simulation: ScheduleSimulator.Simulation) -> [Double] {
                simulation.busyTime.map { simulation.stepTime - $0 }
            }
            XCTAssertEqual(idleTimes(zeroBubble), Array(repeating: p - 1, count: shape.p), "\(shape)")
            XCTAssertEqual(idleTimes(oneForwardOneBackward), Array(repeating: 3 * (p - 1), count: shape.p), "\(shape)")
            let ratio = zeroBubble.bubbleFraction / oneForwardOneBackward.bubbleFraction
            XCTAssertEqual(ratio, (m + p - 1) / (3 * m + p - 1), accuracy: 1e-9, "\(shape)")
            XCTAssertLessThan(ratio, 0.4182, "\(shape)")
            if m >= 3 * (p - 1) { XCTAssertLessThanOrEqual(ratio, 0.4 + 1e-9, "\(shape)") }
        }
    }

    // MARK: - The order of each schedule, written out

    /// Passes only, "F3" for micro-batch 3's forward, "B" for its backward (or its backwardInput), "W" for its
    /// backwardWeight, with ".c" for chunk c when there are several.
    private func passes(_ actions: [PipelineAction], chunks: Bool = false) -> String {
        actions.compactMap { action -> String? in
            let (letter, work): (String, MicroBatchChunk?) = switch action {
            case .forward: ("F", action.work)
            case .backward, .backwardInput: ("B", action.work)
            case .backwardWeight: ("W", action.work)
            default: ("", nil)
            }
            guard let work else { return nil }
            return letter + "\(work.microBatch)" + (chunks ? ".\(work.chunk)" : "")
        }.joined(separator: " ")
    }

    func testEachScheduleOrdersItsPasses() throws {
        XCTAssertEqual(passes(try PipelineSchedule.gpipe.actions(stages: 4, virtualStages: 1, microBatches: 3,
                                                                 rank: 1)),
                       "F0 F1 F2 B2 B1 B0")
        // Rank 1 of 4: two warm-up forwards, then one forward and one backward, then the two backwards left.
        XCTAssertEqual(passes(try PipelineSchedule.oneForwardOneBackward.actions(stages: 4, virtualStages: 1,
                                                                                 microBatches: 5, rank: 1)),
                       "F0 F1 F2 B0 F3 B1 F4 B2 B3 B4")
        // Rank 0 of 2 with 2 chunks: micro-batches 0 and 1 on chunk 0, then on chunk 1, then 2 and 3; a warm-up of
        // (2 − 0 − 1)·2 + (2 − 1)·2 = 4; backwards from the last chunk down.
        XCTAssertEqual(passes(try PipelineSchedule.interleaved.actions(stages: 2, virtualStages: 2, microBatches: 4,
                                                                        rank: 0), chunks: true),
                       "F0.0 F1.0 F0.1 F1.1 F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 B2.1 B3.1 B2.0 B3.0")
        // The last of 4 ranks holds its first 3 W passes back and runs them after its last B.
        XCTAssertEqual(passes(try PipelineSchedule.zeroBubbleH1.actions(stages: 4, virtualStages: 1, microBatches: 6,
                                                                         rank: 3)),
                       "F0 B0 F1 B1 F2 B2 F3 B3 W0 F4 B4 W1 F5 B5 W2 W3 W4 W5")
        XCTAssertEqual(passes(try PipelineSchedule.zeroBubbleH1.actions(stages: 4, virtualStages: 1, microBatches: 6,
                                                                         rank: 0)),
                       "F0 F1 F2 F3 B0 W0 F4 B1 W1 F5 B2 W2 B3 W3 B4 W4 B5 W5")
    }

    func testMessagesNameTheLocalChunkAndTheNeighbourRank() throws {
        // Stage 1 (rank 1, chunk 0) feeds stage 2, which is rank 0's chunk 1.
        let last = try PipelineSchedule.interleaved.actions(stages: 2, virtualStages: 2, microBatches: 2, rank: 1)
        XCTAssertEqual(Array(last.prefix(3)), [.receiveActivation(microBatch: 0, chunk: 0, from: 0),
                                               .forward(microBatch: 0, chunk: 0),
                                               .sendActivation(microBatch: 0, chunk: 0, to: 0)])
        let first = try PipelineSchedule.interleaved.actions(stages: 2, virtualStages: 2, microBatches: 2, rank: 0)
        XCTAssertTrue(first.contains(.receiveActivation(microBatch: 0, chunk: 1, from: 1)))
        XCTAssertTrue(first.contains(.sendGradient(microBatch: 0, chunk: 1, to: 1)))
        // Stage 0 receives no activation and sends no gradient; the last stage (rank 1, chunk 1) receives no gradient.
        XCTAssertFalse(first.contains(.receiveActivation(microBatch: 0, chunk: 0, from: 1)))
        XCTAssertFalse(first.contains(.sendGradient(microBatch: 0, chunk: 0, to: 1)))
        XCTAssertFalse(last.contains { if case .receiveGradient(_, 1, _) = $0 { true } else { false } })
        XCTAssertEqual(last.last, .optimizerStep)
    }

    /// Ranks whose plans differ — another schedule, or a setting that sizes the messages (as a different Keel on one
    /// machine could make of the same settings) — are refused before any step, naming the rank and what differs.
    func testRanksWithDifferentPlansAreRefused() throws {
        func plans(_ schedule: @escaping @Sendable (Int) -> PipelineSchedule, batch: @escaping @Sendable (Int) -> Int64) throws -> [String?] {
            try ThreadCommunicator.run(size: 2) { group -> String? in
                let plan = PipelinePlan(schedule: schedule(group.rank), virtualStages: 1, microBatches: 4, layers: [0..<2, 2..<4],
                                        actions: try schedule(group.rank).actions(stages: 2, virtualStages: 1, microBatches: 4, rank: group.rank),
                                        settings: [("training.batch_size", batch(group.rank))])
                do { try plan.checkAgreement(over: group) } catch let error as KeelError { return error.message }
                return nil
            }
        }
        XCTAssertEqual(try plans({ _ in .gpipe }, batch: { _ in 2 }), [nil, nil])
        for message in try plans({ $0 == 0 ? .oneForwardOneBackward : .gpipe }, batch: { _ in 2 }) {
            XCTAssertTrue(message?.contains("pipeline rank 1 runs schedule gpipe, virtual_stages 1, micro_batches 4 but rank 0 runs schedule 1f1b, virtual_stages 1, micro_batches 4") == true, "\(message ?? "no error")")
        }
        for message in try plans({ _ in .gpipe }, batch: { 2 + 2 * Int64($0) }) {
            XCTAssertTrue(message?.contains("pipeline rank 1 runs training.batch_size = 4 but rank 0 runs 2; every rank must be started with the same settings") == true, "\(message ?? "no error")")
        }
    }

    func testRawValuesAreTheScheduleNames() {
        XCTAssertEqual(PipelineSchedule.allCases.map(\.rawValue), ["gpipe", "1f1b", "interleaved", "zb-h1"])
        XCTAssertEqual(PipelineSchedule(rawValue: "zb-h1"), .zeroBubbleH1)
    }

    // MARK: - The simulator's clock

    /// Two ranks, one micro-batch, F = 1, backward = 2, messages 0.5, worked by hand.
    func testReceiveEndsWhenTheMessageArrives() throws {
        let actions = try Shape(schedule: .gpipe, p: 2, v: 1, m: 1).actions()
        let simulation = try ScheduleSimulator.run(actions, costs: ScheduleCosts(forward: 1, backwardInput: 1.5,
                                                                                backwardWeight: 0.5, transfer: 0.5))
        let times = simulation.timelines.map { $0.map { [$0.start, $0.end] } }
        // Rank 0: F, send, receive gradient (from 1 until 4.5 + 0.5), B, step.
        XCTAssertEqual(times[0], [[0, 1], [1, 1], [1, 5], [5, 7], [7, 7]])
        // Rank 1: receive activation (until 1 + 0.5), F, B, send, step.
        XCTAssertEqual(times[1], [[0, 1.5], [1.5, 2.5], [2.5, 4.5], [4.5, 4.5], [4.5, 4.5]])
        XCTAssertEqual(simulation.stepTime, 7)
        XCTAssertEqual(simulation.busyTime, [3, 3])
        XCTAssertEqual(simulation.bubbleFractions, [4.0 / 7, 4.0 / 7])
        XCTAssertThrowsError(try ScheduleSimulator.run(actions, costs: ScheduleCosts(forward: -1, backwardInput: 1,
                                                                                     backwardWeight: 1)))
    }

    // MARK: - Broken schedules

    private func assertRejected(_ perRank: [[PipelineAction]], p: Int, v: Int = 1, m: Int, saying expected: [String],
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ScheduleValidator.validate(perRank, stages: p, virtualStages: v, microBatches: m),
                             file: file, line: line) { error in
            for part in expected {
                XCTAssertTrue("\(error)".contains(part), "“\(error)” does not say “\(part)”", file: file,
                              line: line)
            }
        }
    }

    /// Validation's forward-only iteration: every (micro-batch, chunk) forwarded once, nothing else computed,
    /// every message received exactly once, and all ranks run to the end with blocking receives.
    func testForwardOnlyIterationsForwardEveryMicroBatchOnceAndRunToTheEnd() throws {
        for p in 1...6 {
            for v in 1...3 {
                for m in 1...(2 * p) {
                    let perRank = (0..<p).map { PipelineSchedule.forwardOnly(stages: p, virtualStages: v, microBatches: m, rank: $0) }
                    var sends: [String] = [], receives: [String] = []
                    for (rank, actions) in perRank.enumerated() {
                        let forwards = actions.compactMap { action -> MicroBatchChunk? in
                            if case let .forward(k, c) = action { return MicroBatchChunk(microBatch: k, chunk: c) }
                            return nil
                        }
                        XCTAssertEqual(Set(forwards).count, forwards.count, "p=\(p) v=\(v) m=\(m) rank \(rank): a forward twice")
                        XCTAssertEqual(forwards.count, v * m, "p=\(p) v=\(v) m=\(m) rank \(rank)")
                        for action in actions {
                            switch action {
                            case let .sendActivation(k, c, to):
                                sends.append("\(k) stage \(c * p + rank + 1) on \(to)")
                            case let .receiveActivation(k, c, from):
                                receives.append("\(k) stage \(c * p + rank) on \(rank)")
                                XCTAssertEqual((c * p + rank - 1) % p, from)
                            case .forward: break
                            default: XCTFail("p=\(p) v=\(v) m=\(m) rank \(rank): \(action) in a forward-only iteration")
                            }
                        }
                    }
                    XCTAssertEqual(sends.sorted(), receives.sorted(), "p=\(p) v=\(v) m=\(m)")
                    XCTAssertEqual(sends.count, m * (p * v - 1))
                    XCTAssertNoThrow(try PipelineReplay.run(perRank) { _, _ in }, "p=\(p) v=\(v) m=\(m)")
                    // With equal stages and free messages, no rank idles once the first micro-batch reached it: the
                    // last rank ends after p − 1 + m·v passes (one micro-batch after another through the chunks
                    // would idle (v − 1)(p − 1) of them per micro-batch).
                    if m % p == 0 {
                        let time = try ScheduleSimulator.run(perRank, costs: ScheduleCosts(forward: 1, backwardInput: 1, backwardWeight: 0)).stepTime
                        XCTAssertEqual(time, Double(p - 1 + m * v), "p=\(p) v=\(v) m=\(m)")
                    }
                }
            }
        }
    }

    /// Actions cross process boundaries as four integers (the cross-rank plan check and the trace use them).
    func testActionsSurviveTheirIntegerEncoding() throws {
        let actions = try PipelineSchedule.zeroBubbleH1.actions(stages: 3, virtualStages: 1, microBatches: 4, rank: 1)
            + PipelineSchedule.interleaved.actions(stages: 2, virtualStages: 2, microBatches: 4, rank: 0)
            + [.backward(microBatch: 2, chunk: 1)]
        for action in actions {
            XCTAssertEqual(PipelineAction(encoded: action.encoded[...]), action)
        }
        XCTAssertEqual(Set(actions.map { $0.encoded[0] }), Set(0...8))
        XCTAssertNil(PipelineAction(encoded: [9, 0, 0, -1][...]))
        XCTAssertNil(PipelineAction(encoded: [0, 0, 0][...]))
    }

    func testValidatorCatchesAMissingReceive() throws {
        var actions = try Shape(schedule: .oneForwardOneBackward, p: 2, v: 1, m: 2).actions()
        XCTAssertEqual(actions[1].removeFirst(), .receiveActivation(microBatch: 0, chunk: 0, from: 0))
        assertRejected(actions, p: 2, m: 2, saying: ["rank 0, action 1 sendActivation(microBatch: 0, chunk: 0, to: 1)",
                                                     "no rank receives it"])
    }

    func testValidatorCatchesRanksThatEachReceiveBeforeSending() throws {
        // Rank 0 waits for micro-batch 0's gradient before sending the activation that rank 1 needs to make it.
        var actions = try Shape(schedule: .oneForwardOneBackward, p: 2, v: 1, m: 1).actions()
        XCTAssertEqual(Array(actions[0][1...2]), [.sendActivation(microBatch: 0, chunk: 0, to: 1),
                                                  .receiveGradient(microBatch: 0, chunk: 0, from: 1)])
        actions[0].swapAt(1, 2)
        let waits = ["deadlocks", "rank 0 waits at action 1 receiveGradient(microBatch: 0, chunk: 0, from: 1)",
                     "rank 1 waits at action 0 receiveActivation(microBatch: 0, chunk: 0, from: 0)"]
        assertRejected(actions, p: 2, m: 1, saying: waits)
        XCTAssertThrowsError(try ScheduleSimulator.run(actions, costs: ScheduleCosts(forward: 1, backwardInput: 1,
                                                                                     backwardWeight: 1))) { error in
            XCTAssertTrue(waits.allSatisfy { "\(error)".contains($0) }, "\(error)")
        }
    }

    func testValidatorCatchesABackwardBeforeItsForward() throws {
        var actions = try Shape(schedule: .oneForwardOneBackward, p: 1, v: 1, m: 2).actions()
        actions[0].swapAt(0, 1)
        assertRejected(actions, p: 1, m: 2,
                       saying: ["rank 0, action 0 backward(microBatch: 0, chunk: 0): comes before its forward"])
    }

    func testValidatorCatchesOtherMistakes() throws {
        let split = try Shape(schedule: .zeroBubbleH1, p: 1, v: 1, m: 1).actions()
        XCTAssertEqual(split[0], [.forward(microBatch: 0, chunk: 0), .backwardInput(microBatch: 0, chunk: 0),
                                  .backwardWeight(microBatch: 0, chunk: 0), .optimizerStep])
        assertRejected([[split[0][0], split[0][2], split[0][1], .optimizerStep]], p: 1, m: 1,
                       saying: ["action 1 backwardWeight(microBatch: 0, chunk: 0): comes before its backwardInput"])
        assertRejected([[split[0][0], split[0][1], .optimizerStep]], p: 1, m: 1,
                       saying: ["rank 0 never runs the backwardWeight of micro-batch 0 on chunk 0"])
        assertRejected([[split[0][0], .backward(microBatch: 0, chunk: 0), split[0][2], .optimizerStep]], p: 1, m: 1,
                       saying: ["mixes a full backward with a split one"])
        assertRejected([[.optimizerStep] + split[0].dropLast()], p: 1, m: 1,
                       saying: ["rank 0, action 0 optimizerStep: is not the last action"])
        assertRejected(split, p: 1, m: 2, saying: ["never runs the forward of micro-batch 1 on chunk 0"])

        var wrongPeer = try Shape(schedule: .gpipe, p: 3, v: 1, m: 1).actions()
        wrongPeer[1][2] = .sendActivation(microBatch: 0, chunk: 0, to: 0)
        assertRejected(wrongPeer, p: 3, m: 1, saying: ["rank 1, action 2", "stage 2 is on rank 2, not 0"])
    }

    func testActionsRejectShapesTheScheduleDoesNotSupport() {
        func message(_ schedule: PipelineSchedule, p: Int, v: Int, m: Int, rank: Int = 0) -> String {
            do {
                _ = try schedule.actions(stages: p, virtualStages: v, microBatches: m, rank: rank)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(message(.interleaved, p: 4, v: 2, m: 6),
                       "pipeline schedule interleaved: micro-batches (6) must be a multiple of the pipeline stages (4)")
        XCTAssertEqual(message(.interleaved, p: 4, v: 1, m: 8),
                       "pipeline schedule interleaved: needs at least 2 virtual stages per rank, got 1")
        XCTAssertEqual(message(.oneForwardOneBackward, p: 4, v: 2, m: 8),
                       "pipeline schedule 1f1b: takes 1 virtual stage per rank, got 2 (use interleaved for more)")
        XCTAssertEqual(message(.gpipe, p: 0, v: 1, m: 8),
                       "pipeline schedule gpipe: needs at least 1 pipeline stage, got 0")
        XCTAssertEqual(message(.zeroBubbleH1, p: 2, v: 1, m: 0),
                       "pipeline schedule zb-h1: needs at least 1 micro-batch, got 0")
        XCTAssertEqual(message(.gpipe, p: 2, v: 1, m: 2, rank: 2), "pipeline schedule gpipe: rank 2 is outside 0..<2")
        XCTAssertEqual(message(.gpipe, p: 2, v: 1, m: 2, rank: -1), "pipeline schedule gpipe: rank -1 is outside 0..<2")
    }
}

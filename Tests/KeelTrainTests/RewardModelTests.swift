import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelKernels
import KeelModel
@testable import KeelTrain
import XCTest

/// Reward models: the gradient of the Bradley–Terry loss (with margins and centring) through the scalar head and the
/// transformer against finite differences; how pairs become rows; and `keel reward eval`'s report on hand-made scores.
final class RewardModelTests: XCTestCase {
    private let config = ModelConfig(architecture: .llama, vocabSize: 20, layers: 2, heads: 2, kvHeads: 1, width: 8,
                                     hiddenWidth: 16, maxLength: 16, ropeTheta: 10_000, tiedEmbeddings: false)

    /// A pair: the prompt's tokens, then each response's (trained).
    private func pair(_ prompt: [Int32], _ chosen: [Int32], _ rejected: [Int32], margin: Double = 0) -> PreferencePair {
        func example(_ response: [Int32]) -> SupervisedExample {
            SupervisedExample(tokens: prompt + response, trained: prompt.map { _ in false } + response.map { _ in true })
        }
        return PreferencePair(chosen: example(chosen), rejected: example(rejected), margin: margin)
    }

    func testRowsOfBothLayouts() {
        let pairs = [pair([1, 2], [3, 4, 5], [6]), pair([7], [8], [9, 10])]
        let next = SequenceBatch(pairs, maximumLength: 3, padding: 0)
        // Chosen rows first; sequences cut to 4 tokens, then shifted: rows of 3 positions.
        XCTAssertEqual(next.length, 3)
        XCTAssertEqual(next.inputs, [1, 2, 3, 7, 0, 0, 1, 2, 0, 7, 9, 0])
        let ignored = CrossEntropy.ignored
        XCTAssertEqual(next.targets, [ignored, 3, 4, 8, ignored, ignored, ignored, 6, ignored, 9, 10, ignored])
        XCTAssertEqual(next.completionLengths, [2, 1, 1, 2])
        let whole = SequenceBatch(pairs, maximumLength: 4, padding: 0, layout: .wholeSequences)
        XCTAssertEqual(whole.length, 4)
        XCTAssertEqual(whole.inputs, [1, 2, 3, 4, 7, 8, 0, 0, 1, 2, 6, 0, 7, 9, 10, 0])
        XCTAssertEqual(whole.lastPositions, [3, 1, 2, 2])
        XCTAssertTrue(whole.targets.allSatisfy { $0 == ignored })
        // A prompt that fills the row leaves nothing to learn from; a reward model needs both sequences whole.
        XCTAssertFalse(SequenceBatch.fits(pair([1, 2, 3], [4], [5]), maximumLength: 3, layout: .wholeSequences))
        XCTAssertTrue(SequenceBatch.fits(pair([1, 2, 3], [4], [5]), maximumLength: 3, layout: .nextTokens))
        XCTAssertFalse(SequenceBatch.fits(pair([1], [2, 3, 4], [5]), maximumLength: 3, layout: .wholeSequences))
        XCTAssertTrue(SequenceBatch.fits(pair([1], [2, 3], [5]), maximumLength: 3, layout: .wholeSequences))
    }

    func testBradleyTerryGradientsMatchFiniteDifferences() throws {
        let model = RewardModel(transformer: try Transformer(config: config, seed: 3), seed: 4)
        // Weights large enough that the loss is far from its flat start.
        for i in 0..<model.score.count { model.score.pointer[i] *= 40 }
        let pairs = [pair([1, 2, 3], [4, 5], [6], margin: 0.5), pair([7, 8], [9], [10, 11, 12]), pair([13], [14, 15, 16], [17, 18])]
        let centering = 0.05
        let training = try TrainConfig.load(path: nil, overrides: ["training.batch_size=3", "training.seq_len=8"], requiresData: false).training
        let trainer = try RewardTraining(model: model, train: pairs, validation: [], centering: centering, training: training,
                                         shuffles: false, padding: 0)
        func loss() -> Double {
            let rewards = model.rewards(of: pairs, batch: 3, maximumLength: 8, padding: 0)
            return zip(pairs, rewards).reduce(0.0) { total, item in
                let (pair, r) = item, x = r.chosen - r.rejected - pair.margin
                return total + log1p(exp(-x)) + centering * (r.chosen + r.rejected) * (r.chosen + r.rejected)
            } / Double(pairs.count)
        }
        model.transformer.gradients.zero()
        model.scoreGradient.zero()
        var sums = PairMetrics()
        trainer.accumulate(pairs, pairsPerStep: pairs.count, into: &sums)
        XCTAssertEqual(sums.loss / Double(pairs.count), loss(), accuracy: 1e-6)
        let epsilon: Float = 1e-3
        func check(_ values: UnsafeMutablePointer<Float>, _ gradients: UnsafePointer<Float>, _ indices: [Int], _ name: String) {
            for i in indices {
                let saved = values[i]
                values[i] = saved + epsilon
                let plus = loss()
                values[i] = saved - epsilon
                let minus = loss()
                values[i] = saved
                let numeric = (plus - minus) / (2 * Double(epsilon))
                // + 1e-4: the fp32 losses' rounding divided by 2ε, which depends on the BLAS library's kernels
                // (up to 2.3e-4 here with BLIS's generic ones; below 2e-4 with OpenBLAS's).
                XCTAssertEqual(Double(gradients[i]), numeric, accuracy: 2e-3 * max(abs(numeric), 1e-1) + 1e-4, "\(name)[\(i)]")
            }
        }
        check(model.score.pointer, model.scoreGradient.pointer, Array(0..<model.score.count), "score.weight")
        let transformer = model.transformer
        for entry in transformer.table.entries where !(entry.part == .head && entry.slot == .output) {
            XCTAssertGreaterThan(entry.range.map { abs(transformer.gradients.pointer[$0]) }.max()!, 0, "\(entry.name) has no gradient")
            check(transformer.parameters.pointer, transformer.gradients.pointer,
                  [entry.offset, entry.offset + entry.count / 2, entry.range.upperBound - 1], entry.name)
        }
    }

    func testTheHeadIsSavedAndReadBack() throws {
        let model = RewardModel(transformer: try Transformer(config: config, seed: 3), seed: 9)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-reward-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try WeightsCheckpoint.write(model.transformer, tokenizer: nil,
                                                     extras: [RewardModel.headFile: try model.headFileContents()],
                                                     config: WeightsCheckpoint.modelSection(config), step: 3, to: directory)
        let loaded = try RewardModel(checkpoint: CheckpointReader(checkpoint))
        XCTAssertEqual(loaded.score.toArray(), model.score.toArray())
        let pairs = [pair([1, 2], [3], [4, 5])]
        let a = model.rewards(of: pairs, batch: 1, maximumLength: 8, padding: 0)
        let b = loaded.rewards(of: pairs, batch: 1, maximumLength: 8, padding: 0)
        XCTAssertEqual(a[0].chosen, b[0].chosen)
        XCTAssertEqual(a[0].rejected, b[0].rejected)
        // A checkpoint without a head is not a reward model.
        let plain = try WeightsCheckpoint.write(model.transformer, tokenizer: nil, config: WeightsCheckpoint.modelSection(config),
                                                step: 4, to: directory)
        XCTAssertThrowsError(try RewardModel(checkpoint: CheckpointReader(plain))) { error in
            XCTAssertTrue("\(error)".contains("is not a reward model"), "\(error)")
        }
    }

    func testTheReportOfSeveralModels() {
        // One prompt with three responses a, b, c labelled a ≻ b, b ≻ c, a ≻ c; another with a cycle x ≻ y ≻ z ≻ x.
        let (a, b, c): ([Int32], [Int32], [Int32]) = ([3], [4, 4], [5, 5, 5])
        let (x, y, z): ([Int32], [Int32], [Int32]) = ([6], [7], [8])
        let pairs = [pair([1], a, b), pair([1], b, c), pair([1], a, c), pair([2], x, y), pair([2], y, z), pair([2], z, x)]
        // Model one: a 3, b 2, c 1 (all three right); x 1, y 0, z −1. Model two: a 1, b 2, c 0 (a ≻ b wrong).
        let one: [(chosen: Double, rejected: Double)] = [(3, 2), (2, 1), (3, 1), (1, 0), (0, -1), (-1, 1)]
        let two: [(chosen: Double, rejected: Double)] = [(1, 2), (2, 0), (1, 0), (1, 0), (0, -1), (-1, 1)]
        let report = RewardEvaluation(pairs: pairs, scores: [("one", one), ("two", two)])
        XCTAssertEqual(report.pairs, 6)
        XCTAssertEqual(report.models.map(\.accuracy), [5.0 / 6, 4.0 / 6])
        XCTAssertEqual(report.models[0].meanMargin, (1 + 1 + 2 + 1 + 1 - 2) / 6.0, accuracy: 1e-12)
        // Chosen responses shorter than the rejected: a over b, b over c, a over c.
        XCTAssertEqual(report.models[0].pairsWhereChosenIsShorter, 3)
        XCTAssertEqual(report.models[1].accuracyWhenChosenIsShorter!, 2.0 / 3, accuracy: 1e-12)
        // No chosen response is the longer.
        XCTAssertEqual(report.models[0].pairsWhereChosenIsLonger, 0)
        XCTAssertNil(report.models[0].accuracyWhenChosenIsLonger)
        XCTAssertEqual(report.agreements.count, 1)
        XCTAssertEqual(report.agreements[0].pairwise, 5.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(report.triples.count, 2)
        XCTAssertEqual(report.triples.cyclicLabels, 1)
        XCTAssertEqual(report.triples.orderedRight, [1, 0])
        // The ensemble's margins are the models' means, (0, 1.5, 1.5, 1, 1, −2), with spreads (1, 0.5, 0.5, 0, 0, 0):
        // right on 4 of 6; of the three with least spread two are right, and two of the other three.
        let ensemble = report.ensemble!
        XCTAssertEqual(ensemble.accuracy, 4.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(ensemble.meanDisagreement, 2.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(ensemble.accuracyWhereAgreeing, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(ensemble.accuracyWhereDisagreeing, 2.0 / 3, accuracy: 1e-12)
        XCTAssertTrue(report.text.contains("transitivity: 2 triples, 1 with cyclic labels; ordered as labelled by one 1, two 0"), report.text)
    }
}

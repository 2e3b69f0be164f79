import Foundation
import KeelCore
import KeelData
import KeelKernels
import KeelModel
@testable import KeelTrain
import XCTest

/// GRPO's gradient through the whole model: the loss of a round of completions (clipped surrogate with a KL
/// penalty, both aggregations, ratios inside and outside the clip range) against finite differences of the same
/// loss computed from the model's log-probabilities; and a verifiable reward's reading of numbers.
final class GroupRelativeOptimizationTests: XCTestCase {
    private let config = ModelConfig(architecture: .llama, vocabSize: 20, layers: 2, heads: 2, kvHeads: 1, width: 8,
                                     hiddenWidth: 16, maxLength: 16, ropeTheta: 10_000, tiedEmbeddings: false)

    func testRoundGradientsMatchFiniteDifferences() throws {
        for (aggregation, shifted, temperature) in [(GroupSettings.Aggregation.tokens, false, Float(1)), (.sequences, false, 1),
                                                    (.tokens, true, 1), (.tokens, true, 0.7)] {
            let policy = try Transformer(config: config, seed: 3), reference = try Transformer(config: config, seed: 4)
            var settings = GroupSettings()
            settings.groupSize = 2
            settings.temperature = temperature
            settings.aggregation = aggregation
            settings.beta = 0.1
            let training = try TrainConfig.load(path: nil, overrides: ["training.batch_size=2", "training.seq_len=12"],
                                                requiresData: false).training
            let prompts = [TaskPrompt(tokens: [1, 2], fields: ["answer": "3"], prompt: .string("12")), TaskPrompt(tokens: [4], fields: ["answer": "5"], prompt: .string("4"))]
            let trainer = try GroupRelativeOptimization(policy: policy, reference: reference, train: prompts, validation: [],
                                                        settings: settings, training: training, shuffles: false, padding: 0,
                                                        stops: [[0]], vocabulary: 20) { completions, _ in completions.map { _ in 0 } }
            func sequence(_ prompt: [Int32], _ completion: [Int32]) -> SupervisedExample {
                SupervisedExample(tokens: prompt + completion, trained: prompt.map { _ in false } + completion.map { _ in true })
            }
            var round = GroupRelativeOptimization.Round()
            round.add([sequence([1, 2], [7, 8, 9]), sequence([1, 2], [10]), sequence([4], [11, 12]), sequence([4], [13, 14, 15, 16])],
                      advantages: [1, -1, 0.7, -0.7], policy: policy, reference: reference, maximumLength: 12, padding: 0)
            if shifted {
                // A sampling policy other than the current one: ratios from e^−0.4 to e^0.4, some beyond 1 ± ε.
                let old = round.microBatches[0].old
                round.microBatches[0].old = old.enumerated().map { $1 == 0 ? 0 : $1 + Float($0 % 5 - 2) * 0.2 }
            }
            // The round's loss from the policy's log-probabilities as they are now.
            func loss() -> Double {
                let tokens = round.tokens, completions = round.completions
                var total = 0.0
                for (batch, advantages, old, referenceValues) in round.microBatches {
                    let current = GroupRelativeOptimization.logProbabilities(policy, batch)
                    for row in 0..<batch.rows {
                        let scale = aggregation == .tokens ? 1 / Double(tokens) : 1 / (Double(completions) * Double(batch.completionLengths[row]))
                        for t in 0..<batch.length where batch.targets[row * batch.length + t] != CrossEntropy.ignored {
                            let at = row * batch.length + t
                            total += scale * PolicyLoss.clippedSurrogate(
                                logProbability: Double(current[at]), old: Double(old[at]), reference: Double(referenceValues[at]),
                                advantage: advantages[row], epsilon: settings.epsilon, beta: settings.beta).loss
                        }
                    }
                }
                return total
            }
            policy.gradients.zero()
            let pass = trainer.accumulate(round, firstIteration: !shifted)
            XCTAssertEqual(pass.loss, loss(), accuracy: 1e-6, "\(aggregation)")
            if shifted { XCTAssertGreaterThan(pass.clipped, 0, "some ratio is clipped") }
            let analytic = policy.gradients.toArray()
            for entry in policy.table.entries {
                for i in [entry.offset, entry.offset + entry.count / 2, entry.range.upperBound - 1] {
                    let saved = policy.parameters.pointer[i], epsilon: Float = 1e-3
                    policy.parameters.pointer[i] = saved + epsilon
                    let plus = loss()
                    policy.parameters.pointer[i] = saved - epsilon
                    let minus = loss()
                    policy.parameters.pointer[i] = saved
                    let numeric = (plus - minus) / (2 * Double(epsilon))
                    XCTAssertEqual(Double(analytic[i]), numeric, accuracy: 3e-3 * max(abs(numeric), 1e-1),
                                   "\(aggregation) shifted \(shifted) T \(temperature) \(entry.name)[\(i - entry.offset)]")
                }
            }
        }
    }

    /// The log-probabilities a round holds — the sampling policy's and the reference's — are those of the distribution
    /// at the sampling temperature, log softmax(logits / T), as TRL's GRPOTrainer computes them, not the model's own.
    func testLogProbabilitiesAreAtTheSamplingTemperature() throws {
        let policy = try Transformer(config: config, seed: 3), reference = try Transformer(config: config, seed: 4)
        var settings = GroupSettings()
        settings.groupSize = 2
        settings.temperature = 0.6
        let training = try TrainConfig.load(path: nil, overrides: ["training.batch_size=1", "training.seq_len=12"],
                                            requiresData: false).training
        let prompt = TaskPrompt(tokens: [1, 2], fields: ["answer": "3"], prompt: .string("12"))
        _ = try GroupRelativeOptimization(policy: policy, reference: reference, train: [prompt], validation: [], settings: settings,
                                          training: training, shuffles: false, padding: 0, stops: [[0]], vocabulary: 20) { c, _ in c.map { _ in 0 } }
        var round = GroupRelativeOptimization.Round()
        let tokens: [Int32] = [1, 2, 7, 8, 9]
        round.add([SupervisedExample(tokens: tokens, trained: [false, false, true, true, true])], advantages: [1],
                  policy: policy, reference: reference, maximumLength: 12, padding: 0)
        for (model, values, name) in [(policy, round.microBatches[0].old, "policy"), (reference, round.microBatches[0].reference, "reference")] {
            // The model's raw logits (a pass without targets), divided by T here.
            tokens.withUnsafeBufferPointer { _ = model.forward(inputs: $0.baseAddress!, targets: nil, batch: 1, length: tokens.count) }
            for t in 1..<(tokens.count - 1) {
                let row = model.logits(row: t).map { Double($0) / 0.6 }, top = row.max()!
                let expected = row[Int(tokens[t + 1])] - top - log(row.reduce(0) { $0 + exp($1 - top) })
                XCTAssertEqual(Double(values[t]), expected, accuracy: 1e-5, "\(name), position \(t)")
            }
        }
    }

    /// A completion ends where it ends with a stop sequence of several tokens (a byte-level tokenizer's `<|im_end|>`),
    /// keeps that sequence (its tokens are trained), and is rewarded without it.
    func testCompletionsStopAtSequencesOfTokens() throws {
        var settings = GroupSettings()
        settings.groupSize = 2
        settings.maxNewTokens = 8
        settings.beta = 0
        let training = try TrainConfig.load(path: nil, overrides: ["training.batch_size=1", "training.seq_len=12"], requiresData: false).training
        let prompts = [TaskPrompt(tokens: [1, 2], fields: [:], prompt: .string("12"))]
        var rewarded: [[Int32]] = []
        func trainer(_ stops: [[Int32]]) throws -> GroupRelativeOptimization {
            try GroupRelativeOptimization(policy: try Transformer(config: config, seed: 3), reference: nil, train: prompts, validation: [],
                                          settings: settings, training: training, shuffles: false, padding: 0, stops: stops,
                                          vocabulary: 20) { completions, _ in
                rewarded = completions
                return completions.map { _ in 0 }
            }
        }
        let free = try trainer([[-1]]).complete(prompts, count: 1, temperature: 0, seed: 0)[0][0]
        XCTAssertEqual(free.tokens.count, 8)
        XCTAssertFalse(free.stopped)
        let stop = [free.tokens[2], free.tokens[3]]
        let end = (1..<free.tokens.count).first { [free.tokens[$0 - 1], free.tokens[$0]] == stop }! + 1
        let stopped = try trainer([[-1], stop]).complete(prompts, count: 1, temperature: 0, seed: 0)[0][0]
        XCTAssertEqual(stopped.tokens, Array(free.tokens.prefix(end)))
        XCTAssertTrue(stopped.stopped)
        XCTAssertEqual(rewarded, [Array(free.tokens.prefix(end - 2))])
        XCTAssertThrowsError(try trainer([[]])) { XCTAssertEqual("\($0)", "an empty stop sequence") }
    }

    func testTheLastNumberIsTheAnswer() {
        let reward = VerifiableReward.lastNumber, answer = ["answer": "89"]
        XCTAssertEqual(reward.reward("17 + 72 = 89", fields: answer), 1)
        XCTAssertEqual(reward.reward("It is 89.", fields: answer), 1)
        XCTAssertEqual(reward.reward("89 or maybe 90", fields: answer), 0)
        XCTAssertEqual(reward.reward("no idea", fields: answer), 0)
        XCTAssertEqual(reward.reward("-3 is the answer, not 3", fields: ["answer": "3"]), 1)
        XCTAssertEqual(reward.reward("x-3", fields: ["answer": "3"]), 1, "a hyphen after a letter is not a minus")
        XCTAssertEqual(reward.reward("2.50", fields: ["answer": "2.5"]), 1)
        XCTAssertEqual(VerifiableReward.numbers(in: "a -4 b 5.25 c 6."), [-4, 5.25, 6])
        // Thousands separators, in the text and in the answer; a leading point.
        XCTAssertEqual(reward.reward("The total is 1,234.", fields: ["answer": "1234"]), 1)
        XCTAssertEqual(reward.reward("1234", fields: ["answer": "1,234"]), 1)
        XCTAssertEqual(VerifiableReward.numbers(in: "1,234,567 and 1, 2 and 3,14 and 12,3456 and .5 or -.25 x.5"),
                       [1_234_567, 1, 2, 3, 14, 12, 3456, 0.5, -0.25, 5])
        XCTAssertEqual(VerifiableReward.exactMatch.reward("  89\n", fields: answer), 1)
        XCTAssertEqual(VerifiableReward.exactMatch.reward("89 ", fields: ["answer": "8"]), 0)
        // GSM8K's answers: a worked solution, then "#### 72": the number after the ####.
        let gsm8k = ["answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"]
        XCTAssertEqual(reward.reward("She sold 72 clips.", fields: gsm8k), 1)
        XCTAssertEqual(reward.reward("24", fields: gsm8k), 0)
        XCTAssertNoThrow(try reward.check(gsm8k))
        // An answer stating several numbers (and no ####) could never be rewarded: refused when the tasks are read.
        XCTAssertThrowsError(try reward.check(["answer": "between 3 and 5"])) {
            XCTAssertEqual("\($0)", "the \"answer\" \"between 3 and 5\" states no single number, which the last-number reward compares with (GSM8K's worked answers are read after their \"####\")")
        }
        XCTAssertThrowsError(try reward.check([:])) { XCTAssertEqual("\($0)", "a task needs \"answer\", which the reward checks") }
        XCTAssertNoThrow(try VerifiableReward.exactMatch.check(["answer": "between 3 and 5"]))
    }
}

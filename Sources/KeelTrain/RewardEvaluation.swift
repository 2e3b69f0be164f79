import Foundation
import KeelData

/// `keel reward eval`'s report: how far each reward model can be trusted on held-out pairs, and how far several
/// (trained with other seeds or data orders) agree — `RewardMetrics` applied to their scores.
public struct RewardEvaluation: Sendable, Encodable {
    /// One model's figures.
    public struct ModelFigures: Sendable, Encodable {
        public var name: String
        public var accuracy: Double
        /// Expected calibration error of σ(r_c − r_r).
        public var calibrationError: Double
        /// Mean r_c − r_r.
        public var meanMargin: Double
        /// Correlation of every response's reward with its length in tokens.
        public var lengthCorrelation: Double
        /// Accuracy on the pairs whose chosen response is the shorter, and on those where it is the longer (nil: there
        /// is no such pair): far apart, the model ranks by length.
        public var accuracyWhenChosenIsShorter: Double?
        public var pairsWhereChosenIsShorter: Int
        public var accuracyWhenChosenIsLonger: Double?
        public var pairsWhereChosenIsLonger: Int
    }

    /// Two models compared.
    public struct Agreement: Sendable, Encodable {
        public var first: String
        public var second: String
        /// The share of pairs both order the same way.
        public var pairwise: Double
        /// Spearman's correlation of their rewards over every response.
        public var rankCorrelation: Double
    }

    /// The models' mean reward as one model, and their disagreement as its uncertainty.
    public struct Ensemble: Sendable, Encodable {
        public var accuracy: Double
        /// Mean over pairs of the standard deviation, across models, of r_c − r_r.
        public var meanDisagreement: Double
        /// The ensemble's accuracy on the half of the pairs where the models disagree least, and on the other half:
        /// an uncertainty worth reporting makes the first higher.
        public var accuracyWhereAgreeing: Double
        public var accuracyWhereDisagreeing: Double
    }

    /// Triples of responses to one prompt with a label for each of their three pairs.
    public struct Triples: Sendable, Encodable {
        public var count: Int
        /// Triples whose labels form a cycle (a ≻ b ≻ c ≻ a): no scalar reward can get all three right.
        public var cyclicLabels: Int
        /// Triples each model orders as all three labels do.
        public var orderedRight: [Int]
    }

    public var pairs: Int
    public var models: [ModelFigures]
    public var agreements: [Agreement]
    public var ensemble: Ensemble?
    public var triples: Triples

    /// - Parameters:
    ///   - scores: per model (name, rewards of each pair's chosen and rejected response), every model on `pairs`.
    public init(pairs: [PreferencePair], scores: [(name: String, rewards: [(chosen: Double, rejected: Double)])]) {
        precondition(!pairs.isEmpty && !scores.isEmpty && scores.allSatisfy { $0.rewards.count == pairs.count })
        self.pairs = pairs.count
        let chosenLengths = pairs.map { $0.chosen.trained.filter { $0 }.count }
        let rejectedLengths = pairs.map { $0.rejected.trained.filter { $0 }.count }
        let shorter = zip(chosenLengths, rejectedLengths).filter { $0 < $1 }.count
        let longer = pairs.indices.filter { chosenLengths[$0] > rejectedLengths[$0] }
        models = scores.map { name, rewards in
            let chosen = rewards.map(\.chosen), rejected = rewards.map(\.rejected)
            let length = RewardMetrics.lengthSensitivity(chosen: chosen, rejected: rejected, chosenLengths: chosenLengths,
                                                         rejectedLengths: rejectedLengths)
            let whenLonger = longer.isEmpty ? nil
                : RewardMetrics.pairwiseAccuracy(chosen: longer.map { chosen[$0] }, rejected: longer.map { rejected[$0] })
            return ModelFigures(name: name, accuracy: RewardMetrics.pairwiseAccuracy(chosen: chosen, rejected: rejected),
                                calibrationError: RewardMetrics.expectedCalibrationError(chosen: chosen, rejected: rejected),
                                meanMargin: zip(chosen, rejected).reduce(0.0) { $0 + $1.0 - $1.1 } / Double(chosen.count),
                                lengthCorrelation: length.correlation, accuracyWhenChosenIsShorter: length.accuracyWhenChosenIsShorter,
                                pairsWhereChosenIsShorter: shorter, accuracyWhenChosenIsLonger: whenLonger,
                                pairsWhereChosenIsLonger: longer.count)
        }
        var agreements: [Agreement] = []
        for i in scores.indices {
            for j in scores.indices where j > i {
                let a = (scores[i].rewards.map(\.chosen), scores[i].rewards.map(\.rejected))
                let b = (scores[j].rewards.map(\.chosen), scores[j].rewards.map(\.rejected))
                agreements.append(Agreement(first: scores[i].name, second: scores[j].name,
                                            pairwise: RewardMetrics.pairwiseAgreement(first: a, second: b),
                                            rankCorrelation: RewardMetrics.spearman(a.0 + a.1, b.0 + b.1)))
            }
        }
        self.agreements = agreements
        ensemble = scores.count < 2 ? nil : Self.ensemble(scores.map(\.rewards))
        triples = Self.triples(pairs, scores.map(\.rewards))
    }

    private static func ensemble(_ rewards: [[(chosen: Double, rejected: Double)]]) -> Ensemble {
        let n = rewards[0].count, k = Double(rewards.count)
        let margins = (0..<n).map { i in rewards.map { $0[i].chosen - $0[i].rejected } }
        let mean = margins.map { $0.reduce(0, +) / k }
        let spread = zip(margins, mean).map { values, mean in
            (values.reduce(0.0) { $0 + ($1 - mean) * ($1 - mean) } / k).squareRoot()
        }
        let right = mean.map { $0 > 0 ? 1.0 : 0.0 }
        let byAgreement = (0..<n).sorted { spread[$0] < spread[$1] }
        let half = max(1, n / 2)
        let accuracy = { (indices: ArraySlice<Int>) in indices.isEmpty ? 0 : indices.reduce(0.0) { $0 + right[$1] } / Double(indices.count) }
        return Ensemble(accuracy: right.reduce(0, +) / Double(n), meanDisagreement: spread.reduce(0, +) / Double(n),
                        accuracyWhereAgreeing: accuracy(byAgreement.prefix(half)),
                        accuracyWhereDisagreeing: accuracy(byAgreement.dropFirst(half)))
    }

    /// Responses are the same when their tokens are; a prompt is the tokens before a response's first trained one.
    private static func triples(_ pairs: [PreferencePair], _ rewards: [[(chosen: Double, rejected: Double)]]) -> Triples {
        func prompt(_ example: SupervisedExample) -> [Int32] { Array(example.tokens.prefix(example.trained.firstIndex(of: true) ?? 0)) }
        // Per prompt: each labelled pair as (winner, loser) response ids, and each response's reward per model.
        var byPrompt: [[Int32]: (responses: [[Int32]: Int], labels: [Int: Set<Int>], rewards: [Int: [Double]])] = [:]
        for (index, pair) in pairs.enumerated() {
            var group = byPrompt[prompt(pair.chosen)] ?? ([:], [:], [:])
            func id(_ example: SupervisedExample, _ reward: (Int) -> Double) -> Int {
                let key = example.tokens
                let id = group.responses[key] ?? group.responses.count
                group.responses[key] = id
                group.rewards[id] = rewards.indices.map(reward)
                return id
            }
            let winner = id(pair.chosen) { rewards[$0][index].chosen }, loser = id(pair.rejected) { rewards[$0][index].rejected }
            group.labels[winner, default: []].insert(loser)
            byPrompt[prompt(pair.chosen)] = group
        }
        var result = Triples(count: 0, cyclicLabels: 0, orderedRight: Array(repeating: 0, count: rewards.count))
        for group in byPrompt.values where group.responses.count >= 3 {
            let ids = Array(0..<group.responses.count)
            func beats(_ a: Int, _ b: Int) -> Bool { group.labels[a]?.contains(b) ?? false }
            func labelled(_ a: Int, _ b: Int) -> Bool { beats(a, b) || beats(b, a) }
            for a in ids { for b in ids where b > a { for c in ids where c > b && labelled(a, b) && labelled(b, c) && labelled(a, c) {
                result.count += 1
                let edges = [(a, b), (b, c), (a, c)].map { beats($0.0, $0.1) ? $0 : ($0.1, $0.0) }
                // Three responses with a label per pair form a cycle exactly when each wins once.
                let wins = [a, b, c].map { r in edges.filter { $0.0 == r }.count }
                if wins.allSatisfy({ $0 == 1 }) { result.cyclicLabels += 1; continue }
                for model in rewards.indices where edges.allSatisfy({ group.rewards[$0.0]![model] > group.rewards[$0.1]![model] }) {
                    result.orderedRight[model] += 1
                }
            } } }
        }
        return result
    }

    /// The report as lines of text.
    public var text: String {
        var lines = ["\(pairs) pairs"]
        for m in models {
            let byLength = [("shorter", m.accuracyWhenChosenIsShorter, m.pairsWhereChosenIsShorter),
                            ("longer", m.accuracyWhenChosenIsLonger, m.pairsWhereChosenIsLonger)].compactMap { side, accuracy, count in
                accuracy.map { String(format: "%.3f on the %d pairs whose chosen response is the %@", $0, count, side) }
            }
            lines.append(String(format: "%@: accuracy %.3f, calibration error %.3f, mean margin %.3f; reward–length correlation %.3f%@",
                                m.name, m.accuracy, m.calibrationError, m.meanMargin, m.lengthCorrelation,
                                byLength.isEmpty ? "" : ", accuracy " + byLength.joined(separator: ", ")))
        }
        for a in agreements {
            lines.append(String(format: "%@ vs %@: agree on %.3f of the pairs, rank correlation of rewards %.3f", a.first, a.second,
                                a.pairwise, a.rankCorrelation))
        }
        if let e = ensemble {
            lines.append(String(format: "ensemble of %d: accuracy %.3f, mean disagreement (std of margins) %.3f; accuracy %.3f where the models agree most, %.3f where they disagree most",
                                models.count, e.accuracy, e.meanDisagreement, e.accuracyWhereAgreeing, e.accuracyWhereDisagreeing))
        }
        if triples.count == 0 {
            lines.append("transitivity: no prompt has three responses labelled pairwise")
        } else {
            lines.append("transitivity: \(triples.count) triples, \(triples.cyclicLabels) with cyclic labels; ordered as labelled by "
                         + zip(models, triples.orderedRight).map { "\($0.name) \($1)" }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}

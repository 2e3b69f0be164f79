import Foundation
import KeelComm
import KeelCore
import KeelData
import KeelKernels
import KeelModel

/// What preference optimisation optimises (`PreferenceLoss.preference`).
public struct PreferenceSettings: Sendable {
    public var objective: PreferenceLoss.Objective
    /// β: how far from the reference the policy may move (DPO's temperature; IPO's regularisation τ).
    public var beta: Double
    /// cDPO's ε: the share of pairs assumed mislabelled (sigmoid only).
    public var labelSmoothing: Double

    public init(objective: PreferenceLoss.Objective = .sigmoid, beta: Double = 0.1, labelSmoothing: Double = 0) {
        self.objective = objective
        self.beta = beta
        self.labelSmoothing = labelSmoothing
    }
}

/// Direct preference optimisation (DPO, or IPO) of a policy against a frozen reference — the policy's own starting
/// weights — as TRL's `DPOTrainer` runs it: per pair, the log-probabilities of the chosen and rejected completions
/// under the policy and the reference, the loss of their log-ratios (`PreferenceLoss.preference`), the mean over
/// the step's pairs, the global gradient norm clipped, then AdamW.
///
/// The reference's log-probabilities are computed once, before the first step, and kept (`reference`): the reference
/// model never exists beside the policy. A step's micro-batch costs two forward passes and one backward: the first
/// forward finds the policy's log-probabilities, which set each pair's derivative; the second runs with each
/// position's loss weighed by it (`Transformer.forward(lossWeights:)`: log π is minus the sum of its positions'
/// cross-entropies), and the backward pass adds that gradient.
///
/// With a data-parallel group, each step's pairs are split between its ranks (each micro-batch takes `batch` pairs
/// per rank), the gradients and the metrics averaged over it; every rank holds the whole model.
public final class PreferenceOptimization {
    public let model: Transformer
    public let settings: PreferenceSettings
    public let training: TrainConfig.TrainingSettings
    private let optimizer: Optimizer
    private let group: any Communicator
    public let train: [PreferencePair]
    public let validation: [PreferencePair]
    /// The reference's log-probabilities of every training and validation pair's responses.
    public private(set) var reference: (train: [(chosen: Double, rejected: Double)], validation: [(chosen: Double, rejected: Double)])
    private let order: PairOrder
    private let padding: Int32

    /// - Parameters:
    ///   - model: the policy, holding the reference's weights (a fine-tuned model's).
    ///   - shuffles: draw each epoch's pairs in an order of its own (seeded by `training.seed`); false keeps the
    ///     files' order, as a comparison with another trainer needs.
    ///   - padding: the token id padded rows hold (never a target).
    public init(model: Transformer, train: [PreferencePair], validation: [PreferencePair], settings: PreferenceSettings,
                training: TrainConfig.TrainingSettings, shuffles: Bool, padding: Int32,
                group: any Communicator = SingleProcessCommunicator()) throws {
        order = try PairOrder(count: train.count, kind: "pairs", training: training, ranks: group.size, shuffles: shuffles)
        guard settings.beta > 0, settings.beta.isFinite else { throw KeelError("--beta must be a positive number (got \(settings.beta))") }
        guard (0..<0.5).contains(settings.labelSmoothing) else {
            throw KeelError("label smoothing must be in [0, 0.5) (got \(settings.labelSmoothing))")
        }
        guard settings.labelSmoothing == 0 || settings.objective == .sigmoid else {
            throw KeelError("label smoothing applies to the sigmoid (DPO) loss only")
        }
        self.model = model
        self.train = train
        self.validation = validation
        self.settings = settings
        self.training = training
        self.padding = padding
        self.group = group
        model.matrixPrecision = training.precision
        optimizer = Optimizer(model: model, dataParallel: group, zeroStage: 0, settings: training.adamW,
                              decayEmbeddings: training.decayEmbeddings)
        reference = ([], [])
    }

    /// What a checkpoint keeps to resume: AdamW's moments (`TrainingStateFile`).
    public var stateBuffers: [String: FloatBuffer] { ["adam.m": optimizer.m, "adam.v": optimizer.v] }

    /// The file beside a checkpoint's weights that holds the reference's log-probabilities.
    public static let referenceFile = "reference_logps.json"

    /// The reference's log-probabilities as JSON ({"train": [[chosen, rejected], …], "validation": …}; every Double
    /// written so that it reads back exactly).
    public func referenceContents() throws -> Data {
        let pairs = { (values: [(chosen: Double, rejected: Double)]) in values.map { [$0.chosen, $0.rejected] } }
        return try JSONEncoder().encode(["train": pairs(reference.train), "validation": pairs(reference.validation)])
    }

    /// The reference's log-probabilities saved in checkpoint `directory` (a resumed run's: computed once, by its
    /// first start).
    public func restoreReference(from directory: URL) throws {
        let url = directory.appendingPathComponent(Self.referenceFile)
        guard let data = FileManager.default.contents(atPath: url.path),
              let saved = try? JSONDecoder().decode([String: [[Double]]].self, from: data),
              let train = saved["train"], let validation = saved["validation"],
              train.count == self.train.count, validation.count == self.validation.count,
              (train + validation).allSatisfy({ $0.count == 2 }) else {
            throw KeelError("\(url.path): missing, or not the reference of these pairs (were --data and training.seq_len the same?)")
        }
        reference = (train.map { ($0[0], $0[1]) }, validation.map { ($0[0], $0[1]) })
    }

    /// The reference's log-probabilities of every pair (the policy's weights before the first step), computed once;
    /// `progress` hears how many pairs are done of how many, and may end the pass by throwing.
    public func computeReference(progress: (Int, Int) throws -> Void = { _, _ in }) rethrows {
        let total = train.count + validation.count
        var done = 0
        func logProbabilities(_ pairs: [PreferencePair]) throws -> [(chosen: Double, rejected: Double)] {
            try stride(from: 0, to: pairs.count, by: training.batchSize).flatMap { start in
                let chunk = Array(pairs[start..<min(start + training.batchSize, pairs.count)])
                let values = policyLogProbabilities(SequenceBatch(chunk, maximumLength: training.sequenceLength, padding: padding))
                done += chunk.count
                try progress(done, total)
                return (0..<chunk.count).map { (values[$0], values[chunk.count + $0]) }
            }
        }
        reference = (try logProbabilities(train), try logProbabilities(validation))
    }

    /// Runs optimizer step `number` (from 1) at `learningRate`; throws `TrainingDiverged`, before changing any
    /// parameter, when the loss or the gradient norm is not finite.
    public func step(_ number: Int, learningRate: Float) throws -> PairMetrics {
        precondition(reference.train.count == train.count, "computeReference() before the first step")
        let b = training.batchSize, m = training.gradientAccumulation, replicas = group.size
        let pairsPerStep = b * m * replicas
        model.gradients.zero()
        var metrics = PairMetrics()
        for k in 0..<m {
            let indices = order.indices(step: number, microBatch: k, batch: b, accumulation: m, rank: group.rank, ranks: replicas)
            let batch = SequenceBatch(indices.map { train[$0] }, maximumLength: training.sequenceLength, padding: padding)
            let policy = policyLogProbabilities(batch)
            var weights = [Float](repeating: 0, count: batch.rows * batch.length)
            for (i, index) in indices.enumerated() {
                let pair = measure(policy: (policy[i], policy[b + i]), reference: reference.train[index],
                                   lengths: (batch.completionLengths[i], batch.completionLengths[b + i]), into: &metrics)
                // log π is minus the sum of the row's cross-entropies: each position weighs −∂loss/∂log π, the loss
                // being the mean over the step's pairs.
                for (row, derivative) in [(i, pair.dChosen), (b + i, pair.dRejected)] {
                    let weight = Float(-derivative / Double(pairsPerStep))
                    for t in 0..<batch.length where batch.targets[row * batch.length + t] != CrossEntropy.ignored {
                        weights[row * batch.length + t] = weight
                    }
                }
            }
            batch.withTokens { inputs, targets in
                weights.withUnsafeBufferPointer { weights in
                    _ = model.forward(inputs: inputs, targets: targets, batch: batch.rows, length: batch.length, lossScale: 1,
                                      lossWeights: weights.baseAddress!)
                }
            }
            model.backward()
        }
        if replicas > 1 {
            try group.allReduce(UnsafeMutableBufferPointer(start: model.gradients.pointer, count: model.gradients.count), .sum,
                                label: "step \(number): gradients")
        }
        metrics = try metrics.averaged(over: group, label: "step \(number)")
        let norm = optimizer.shard.sumOfSquares().squareRoot()
        metrics.gradientNorm = norm
        let scale = try TrainingDiverged.clippingFactor(loss: metrics.loss, norm: norm, clip: training.gradientClip, step: number)
        try optimizer.update(learningRate: learningRate, step: number, gradientScale: scale)
        return metrics
    }

    /// The loss and rewards on the validation pairs, with the policy as it is (no gradients).
    public func evaluate() throws -> PairMetrics {
        var metrics = PairMetrics()
        let b = training.batchSize, replicas = group.size
        // Each rank measures every replicas-th batch of pairs; the sums are averaged over the group.
        for start in stride(from: group.rank * b, to: validation.count, by: b * replicas) {
            let chunk = start..<min(start + b, validation.count)
            let batch = SequenceBatch(Array(validation[chunk]), maximumLength: training.sequenceLength, padding: padding)
            let policy = policyLogProbabilities(batch)
            for (i, index) in chunk.enumerated() {
                _ = measure(policy: (policy[i], policy[chunk.count + i]), reference: reference.validation[index],
                            lengths: (batch.completionLengths[i], batch.completionLengths[chunk.count + i]), into: &metrics)
            }
        }
        return try metrics.averaged(over: group, label: "evaluation")
    }

    /// One pair's loss and derivatives, its sums added into `metrics`.
    private func measure(policy: (Double, Double), reference: (chosen: Double, rejected: Double), lengths: (Int, Int),
                         into metrics: inout PairMetrics) -> (dChosen: Double, dRejected: Double) {
        // IPO compares log-probabilities per completion token (TRL's normalisation).
        let scale = settings.objective == .ipo ? (1 / Double(max(1, lengths.0)), 1 / Double(max(1, lengths.1))) : (1, 1)
        let result = PreferenceLoss.preference(settings.objective, policyChosen: policy.0 * scale.0,
                                               policyRejected: policy.1 * scale.1,
                                               referenceChosen: reference.chosen * scale.0,
                                               referenceRejected: reference.rejected * scale.1, beta: settings.beta,
                                               labelSmoothing: settings.labelSmoothing)
        // Rewards are β times the summed log-ratios whatever the objective, as TRL logs them.
        let chosenReward = settings.beta * (policy.0 - reference.chosen)
        let rejectedReward = settings.beta * (policy.1 - reference.rejected)
        metrics.add(loss: result.loss, chosen: chosenReward, rejected: rejectedReward, logProbabilities: policy)
        return (result.dChosen * scale.0, result.dRejected * scale.1)
    }

    /// The policy's log-probability of each row's completion (a forward pass without gradients).
    private func policyLogProbabilities(_ batch: SequenceBatch) -> [Double] {
        batch.withTokens { inputs, targets in
            _ = model.forward(inputs: inputs, targets: targets, batch: batch.rows, length: batch.length)
        }
        return batch.logProbabilities(model.rowLosses())
    }
}

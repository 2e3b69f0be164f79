import Foundation
import KeelComm
import KeelCore
import KeelData
import KeelKernels
import KeelModel

/// Trains a reward model on preference pairs, as TRL's `RewardTrainer` does: per pair, the rewards of the chosen and
/// the rejected response, −log σ(r_c − r_r − margin) + centring · (r_c + r_r)² (`PreferenceLoss.bradleyTerry`), the
/// mean over the step's pairs, the global gradient norm (transformer and head) clipped, then AdamW on both.
///
/// A micro-batch is one forward pass to the final norm (`Transformer.features`), the rewards read at each sequence's
/// last token, and one backward pass from the gradient of the loss with respect to those features
/// (`Transformer.backward(featureGradient:)`). With a data-parallel group, each step's pairs are split between its
/// ranks and the gradients summed over it, as in `PreferenceOptimization`.
public final class RewardTraining {
    public let model: RewardModel
    public let training: TrainConfig.TrainingSettings
    /// TRL's `center_rewards_coefficient`.
    public let centering: Double
    public let train: [PreferencePair]
    public let validation: [PreferencePair]
    private let optimizer: Optimizer
    /// AdamW's moments of the head.
    private let scoreMoments: (m: FloatBuffer, v: FloatBuffer)
    private let group: any Communicator
    private let order: PairOrder
    private let padding: Int32

    /// `orderSeed` draws the pairs' order (default `training.seed`); `shuffles` false keeps the files' order.
    public init(model: RewardModel, train: [PreferencePair], validation: [PreferencePair], centering: Double,
                training: TrainConfig.TrainingSettings, shuffles: Bool, orderSeed: UInt64? = nil, padding: Int32,
                group: any Communicator = SingleProcessCommunicator()) throws {
        order = try PairOrder(count: train.count, kind: "pairs", training: training, ranks: group.size, seed: orderSeed,
                              shuffles: shuffles)
        guard centering >= 0, centering.isFinite else {
            throw KeelError("--centering must be a number that is not negative (got \(centering))")
        }
        self.model = model
        self.train = train
        self.validation = validation
        self.centering = centering
        self.training = training
        self.group = group
        self.padding = padding
        model.transformer.matrixPrecision = training.precision
        optimizer = Optimizer(model: model.transformer, dataParallel: group, zeroStage: 0, settings: training.adamW,
                              decayEmbeddings: training.decayEmbeddings)
        scoreMoments = (FloatBuffer(count: model.score.count), FloatBuffer(count: model.score.count))
    }

    /// What a checkpoint keeps to resume: AdamW's moments of the transformer and of the head (`TrainingStateFile`).
    public var stateBuffers: [String: FloatBuffer] {
        ["adam.m": optimizer.m, "adam.v": optimizer.v, "head.adam.m": scoreMoments.m, "head.adam.v": scoreMoments.v]
    }

    /// Runs optimizer step `number` (from 1) at `learningRate`; throws `TrainingDiverged`, before changing any
    /// parameter, when the loss or the gradient norm is not finite.
    public func step(_ number: Int, learningRate: Float) throws -> PairMetrics {
        let b = training.batchSize, m = training.gradientAccumulation, replicas = group.size
        let transformer = model.transformer
        transformer.gradients.zero()
        model.scoreGradient.zero()
        var sums = PairMetrics()
        for k in 0..<m {
            let indices = order.indices(step: number, microBatch: k, batch: b, accumulation: m, rank: group.rank, ranks: replicas)
            accumulate(indices.map { train[$0] }, pairsPerStep: b * m * replicas, into: &sums)
        }
        if replicas > 1 {
            for buffer in [transformer.gradients, model.scoreGradient] {
                try group.allReduce(UnsafeMutableBufferPointer(start: buffer.pointer, count: buffer.count), .sum,
                                    label: "step \(number): gradients")
            }
        }
        var metrics = try sums.averaged(over: group, label: "step \(number)")
        let headSquares = (0..<model.score.count).reduce(0.0) { $0 + Double(model.scoreGradient.pointer[$1] * model.scoreGradient.pointer[$1]) }
        let norm = (optimizer.shard.sumOfSquares() + headSquares).squareRoot()
        metrics.gradientNorm = norm
        let scale = try TrainingDiverged.clippingFactor(loss: metrics.loss, norm: norm, clip: training.gradientClip, step: number)
        try optimizer.update(learningRate: learningRate, step: number, gradientScale: scale)
        AdamW.update(params: model.score.pointer, grads: model.scoreGradient.pointer, m: scoreMoments.m.pointer,
                     v: scoreMoments.v.pointer, groups: [(0..<model.score.count, true)], learningRate: learningRate,
                     step: number, settings: training.adamW, gradientScale: scale)
        return metrics
    }

    /// One micro-batch: adds the gradients of its pairs' share of the step's mean loss (`pairsPerStep` pairs in all)
    /// into the transformer's and the head's, and their losses and rewards into `sums`.
    func accumulate(_ pairs: [PreferencePair], pairsPerStep: Int, into sums: inout PairMetrics) {
        let b = pairs.count, width = model.transformer.config.width
        let batch = SequenceBatch(pairs, maximumLength: training.sequenceLength, padding: padding, layout: .wholeSequences)
        let (rewards, features) = model.rewards(batch)
        var featureGradient = [Float](repeating: 0, count: batch.rows * batch.length * width)
        for (i, pair) in pairs.enumerated() {
            let result = PreferenceLoss.bradleyTerry(chosen: rewards[i], rejected: rewards[b + i], margin: pair.margin,
                                                     centering: centering)
            sums.add(loss: result.loss, chosen: rewards[i], rejected: rewards[b + i])
            // r = w · h at the row's last token: ∂r/∂h = w, ∂r/∂w = h; the loss is the mean over the step's pairs.
            for (row, derivative) in [(i, result.dChosen), (b + i, result.dRejected)] {
                let d = derivative / Double(pairsPerStep), at = (row * batch.length + batch.lastPositions[row]) * width
                for c in 0..<width {
                    featureGradient[at + c] = Float(d * Double(model.score.pointer[c]))
                    model.scoreGradient.pointer[c] += Float(d * Double(features[at + c]))
                }
            }
        }
        featureGradient.withUnsafeBufferPointer { model.transformer.backward(featureGradient: $0.baseAddress!) }
    }

    /// The loss, accuracy and mean rewards on the validation pairs (no gradients).
    public func evaluate() throws -> PairMetrics {
        var sums = PairMetrics()
        let b = training.batchSize, replicas = group.size
        for start in stride(from: group.rank * b, to: validation.count, by: b * replicas) {
            let pairs = Array(validation[start..<min(start + b, validation.count)])
            for (pair, rewards) in zip(pairs, model.rewards(of: pairs, batch: b, maximumLength: training.sequenceLength, padding: padding)) {
                let loss = PreferenceLoss.bradleyTerry(chosen: rewards.chosen, rejected: rewards.rejected, margin: pair.margin,
                                                       centering: centering).loss
                sums.add(loss: loss, chosen: rewards.chosen, rejected: rewards.rejected)
            }
        }
        return try sums.averaged(over: group, label: "evaluation")
    }
}

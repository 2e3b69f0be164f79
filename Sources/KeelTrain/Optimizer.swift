import KeelComm
import KeelCore
import KeelKernels
import KeelModel
import KeelParallel

/// AdamW for one model (or pipeline chunk) over its flat buffers. It owns its state and its ZeRO shard: the
/// range of the buffers it updates (`shard`: all of them, or with ZeRO this rank's range over the
/// data-parallel group), AdamW's moments for that range, one fused pass by decay group, then the updated
/// parameters shared with the group (except under ZeRO-3, where each rank keeps only its range).
public final class Optimizer {
    public let model: Transformer
    /// The range this rank updates, and the averaged gradients of it.
    public let shard: OptimizerShard
    /// AdamW's first and second moments of `shard.range`.
    public let m: FloatBuffer
    public let v: FloatBuffer
    public let settings: AdamWSettings
    /// Decay groups clipped to the shard, relative to its start.
    private let groups: [(range: Range<Int>, decays: Bool)]

    /// `zeroStage` (0–3) says what is sharded over `dataParallel` (`OptimizerShard`).
    public init(model: Transformer, dataParallel: any Communicator, zeroStage: Int, settings: AdamWSettings,
                decayEmbeddings: Bool) {
        self.model = model
        self.settings = settings
        shard = OptimizerShard(model: model, communicator: dataParallel, stage: zeroStage)
        let range = shard.range
        m = FloatBuffer(count: range.count)
        v = FloatBuffer(count: range.count)
        groups = model.table.decayGroups(decayEmbeddings: decayEmbeddings).compactMap { group in
            let part = group.range.clamped(to: range)
            guard !part.isEmpty else { return nil }
            return ((part.lowerBound - range.lowerBound)..<(part.upperBound - range.lowerBound), group.decays)
        }
    }

    /// Applies AdamW step `step` (from 1) to this rank's shard with the averaged gradients multiplied by
    /// `gradientScale` as AdamW reads them (the clipping factor; the buffer keeps the unclipped values), and
    /// shares the updated parameters with the other ranks of the data-parallel group.
    public func update(learningRate: Float, step: Int, gradientScale: Float) throws {
        AdamW.update(params: model.parameters.pointer + shard.range.lowerBound, grads: shard.gradients,
                     m: m.pointer, v: v.pointer, groups: groups, learningRate: learningRate, step: step,
                     settings: settings, gradientScale: gradientScale)
        try shard.gatherParameters(label: "step \(step)")
    }
}

extension TrainingDiverged {
    /// The factor a step's gradients are scaled by before the update: `clip / norm` when the global norm is above
    /// `clip` (0: no clipping), else 1. Throws, before anything changes, when the loss or the norm is not finite.
    static func clippingFactor(loss: Double, norm: Double, clip: Double, step: Int) throws -> Float {
        guard loss.isFinite, norm.isFinite else {
            throw TrainingDiverged(step: step, loss: loss, norm: norm)
        }
        return clip > 0 && norm > clip ? Float(clip / norm) : 1
    }
}

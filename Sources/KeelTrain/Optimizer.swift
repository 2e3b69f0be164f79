import KeelCore
import KeelKernels
import KeelModel
import KeelParallel

/// AdamW for one model (or pipeline chunk) over its flat buffers: its moments for the span of parameters
/// this rank updates (`parallel.shard`: all of them, or its ZeRO-1 shard), one fused pass by decay group,
/// then the updated parameters shared with the data-parallel group.
public final class Optimizer {
    public let model: Transformer
    public let parallel: DataParallel
    /// AdamW's first and second moments of `parallel.shard`.
    public let m: FloatBuffer
    public let v: FloatBuffer
    public let settings: AdamWSettings
    /// Decay groups clipped to the shard, relative to its start.
    private let groups: [(range: Range<Int>, decays: Bool)]

    public init(model: Transformer, parallel: DataParallel, settings: AdamWSettings, decayEmbeddings: Bool) {
        self.model = model
        self.parallel = parallel
        self.settings = settings
        let shard = parallel.shard
        m = FloatBuffer(count: shard.count)
        v = FloatBuffer(count: shard.count)
        groups = model.table.decayGroups(decayEmbeddings: decayEmbeddings).compactMap { group in
            let part = group.range.clamped(to: shard)
            guard !part.isEmpty else { return nil }
            return ((part.lowerBound - shard.lowerBound)..<(part.upperBound - shard.lowerBound), group.decays)
        }
    }

    /// Applies AdamW step `step` (from 1) to this rank's shard with the averaged gradients multiplied by
    /// `gradientScale` as AdamW reads them (the clipping factor; the buffer keeps the unclipped values), and
    /// shares the updated parameters with the other ranks of the data-parallel group.
    public func update(learningRate: Float, step: Int, gradientScale: Float) throws {
        AdamW.update(params: model.parameters.pointer + parallel.shard.lowerBound, grads: parallel.shardGradients,
                     m: m.pointer, v: v.pointer, groups: groups, learningRate: learningRate, step: step,
                     settings: settings, gradientScale: gradientScale)
        try parallel.gatherParameters()
    }
}

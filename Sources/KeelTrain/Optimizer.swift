import KeelCore
import KeelData
import KeelComm
import KeelKernels
import KeelModel
import KeelParallel

/// The optimizer half of a training step over a model's flat buffers: gradient averaging across
/// data-parallel ranks, global gradient norm, clipping, and one fused AdamW pass by decay group over this
/// rank's shard. Shared by `Trainer` and `keel bench`.
public final class Optimizer {
    public let model: Transformer
    public let parallel: DataParallel
    /// AdamW's first and second moments of `parallel.shard` (all parameters without ZeRO-1).
    public let m: FloatBuffer
    public let v: FloatBuffer
    public let settings: AdamWSettings
    /// Maximum global gradient norm (0 disables clipping).
    public let gradientClip: Double
    /// Decay groups clipped to the shard, relative to its start.
    private let groups: [(range: Range<Int>, decays: Bool)]

    public init(model: Transformer, parallel: DataParallel, settings: AdamWSettings, gradientClip: Double,
                decayEmbeddings: Bool) {
        self.model = model
        self.parallel = parallel
        self.settings = settings
        self.gradientClip = gradientClip
        let shard = parallel.shard
        m = FloatBuffer(count: shard.count)
        v = FloatBuffer(count: shard.count)
        groups = model.table.decayGroups(decayEmbeddings: decayEmbeddings).compactMap { group in
            let part = group.range.clamped(to: shard)
            guard !part.isEmpty else { return nil }
            return ((part.lowerBound - shard.lowerBound)..<(part.upperBound - shard.lowerBound), group.decays)
        }
    }

    /// The global L2 norm of the averaged gradients.
    public func gradientNorm() throws -> Float {
        Float(try parallel.gradientSumOfSquares().squareRoot())
    }

    /// Applies AdamW step `step` (from 1) to this rank's shard with the gradients clipped to `gradientClip`
    /// (given their norm; the clipping factor is applied as AdamW reads them, the buffer keeps the unclipped
    /// values), and shares the updated parameters with the other ranks.
    public func update(gradientNorm: Float, learningRate: Float, step: Int) throws {
        let shard = parallel.shard
        let clipping = gradientClip > 0 && Double(gradientNorm) > gradientClip
        AdamW.update(params: model.parameters.pointer + shard.lowerBound, grads: parallel.shardGradients, m: m.pointer,
                     v: v.pointer, groups: groups, learningRate: learningRate, step: step, settings: settings,
                     gradientScale: clipping ? Float(gradientClip) / gradientNorm : 1)
        try parallel.gatherParameters()
    }

    /// Zeroes the gradients, runs `accumulation` micro-batches from `loader` through forward and backward
    /// (each scaled by 1/accumulation), averages the gradients across ranks (overlapping the last backward
    /// pass), and returns the mean loss over all ranks. `inputs` and `targets` are scratch of
    /// loader.batch × length tokens; `label` names the step in communication traces and errors.
    public func accumulateGradients(
        from loader: TokenLoader, accumulation: Int, inputs: inout [Int32], targets: inout [Int32], label: String
    ) throws -> Double {
        let batch = loader.batch, length = loader.windows.length
        model.gradients.zero()
        var loss = 0.0
        for micro in 0..<accumulation {
            func fetch() {
                inputs.withUnsafeMutableBufferPointer { i in
                    targets.withUnsafeMutableBufferPointer { t in loader.next(inputs: i.baseAddress!, targets: t.baseAddress!) }
                }
            }
            if let profiler = model.profiler {
                profiler.measure(.data, .forward, flops: 0, bytes: 8 * Double(batch * length), fetch)
            } else {
                fetch()
            }
            if micro == accumulation - 1 { parallel.prepareLastMicroBatch(label: label) }
            let microLoss = inputs.withUnsafeBufferPointer { i in
                targets.withUnsafeBufferPointer { t in
                    model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length,
                                  lossScale: 1 / Float(accumulation))
                }
            }
            model.backward()
            loss += Double(microLoss) / Double(accumulation)
        }
        try parallel.synchronizeGradients()
        return try parallel.communicator.allReduce([loss], .average, label: "\(label): loss")[0]
    }
}

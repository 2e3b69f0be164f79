import KeelCore
import KeelData
import KeelKernels
import KeelModel

/// The optimizer half of a training step over a model's flat buffers: global gradient norm, clipping,
/// and one fused AdamW pass by decay group. Shared by `Trainer` and `keel bench`.
public final class Optimizer {
    public let model: Transformer
    /// AdamW's first and second moments, laid out like the parameters.
    public let m: FloatBuffer
    public let v: FloatBuffer
    public let settings: AdamWSettings
    /// Maximum global gradient norm (0 disables clipping).
    public let gradientClip: Double
    private let groups: [(range: Range<Int>, decays: Bool)]

    public init(model: Transformer, settings: AdamWSettings, gradientClip: Double, decayEmbeddings: Bool) {
        self.model = model
        self.settings = settings
        self.gradientClip = gradientClip
        m = FloatBuffer(count: model.table.count)
        v = FloatBuffer(count: model.table.count)
        groups = model.table.decayGroups(decayEmbeddings: decayEmbeddings)
    }

    /// The global L2 norm of the gradients.
    public func gradientNorm() -> Float {
        Float(sumOfSquares(model.gradients.pointer, count: model.table.count).squareRoot())
    }

    /// Clips the gradients to `gradientClip` (given their norm) and applies AdamW step `step` (from 1).
    public func update(gradientNorm: Float, learningRate: Float, step: Int) {
        if gradientClip > 0, Double(gradientNorm) > gradientClip {
            scale(model.gradients.pointer, count: model.table.count, by: Float(gradientClip) / gradientNorm)
        }
        AdamW.update(params: model.parameters.pointer, grads: model.gradients.pointer, m: m.pointer, v: v.pointer,
                     groups: groups, learningRate: learningRate, step: step, settings: settings)
    }

    /// Zeroes the gradients, runs `accumulation` micro-batches from `loader` through forward and backward
    /// (each scaled by 1/accumulation), and returns the mean loss. `inputs` and `targets` are scratch of
    /// loader.batch × length tokens.
    public func accumulateGradients(
        from loader: TokenLoader, accumulation: Int, inputs: inout [Int32], targets: inout [Int32]
    ) -> Double {
        let batch = loader.batch, length = loader.windows.length
        model.gradients.zero()
        var loss = 0.0
        for _ in 0..<accumulation {
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
            let microLoss = inputs.withUnsafeBufferPointer { i in
                targets.withUnsafeBufferPointer { t in
                    model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length,
                                  lossScale: 1 / Float(accumulation))
                }
            }
            model.backward()
            loss += Double(microLoss) / Double(accumulation)
        }
        return loss
    }
}

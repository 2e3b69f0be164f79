import CAdamW
import Foundation
import KeelCore

/// AdamW hyper-parameters (decoupled weight decay, as in PyTorch's `torch.optim.AdamW`).
public struct AdamWSettings: Sendable, Equatable {
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float

    public init(beta1: Float = 0.9, beta2: Float = 0.95, epsilon: Float = 1e-8, weightDecay: Float = 0.1) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }
}

/// One fused AdamW pass over ranges of the flat parameter, gradient and moment buffers.
public enum AdamW {
    /// Updates `params[range]` in place for each (range, decays) group; `step` counts from 1. Gradients are
    /// read multiplied by `gradientScale` (gradient clipping's factor), which spares a pass over them.
    public static func update(
        params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, groups: [(range: Range<Int>, decays: Bool)], learningRate: Float,
        step: Int, settings: AdamWSettings, gradientScale: Float = 1
    ) {
        let b1 = settings.beta1, b2 = settings.beta2
        let correction1 = 1 - Float(pow(Double(b1), Double(step)))
        let correction2 = 1 - Float(pow(Double(b2), Double(step)))
        let stepSize = learningRate / correction1
        let rootCorrection2 = correction2.squareRoot()
        for group in groups {
            let decay = group.decays ? 1 - learningRate * settings.weightDecay : 1
            let base = group.range.lowerBound
            parallelBlocks(group.range.count) { start, end in
                keel_adamw_update(params + base + start, grads + base + start, m + base + start, v + base + start,
                                  end - start, b1, b2, stepSize, rootCorrection2, settings.epsilon, decay, gradientScale)
            }
        }
    }
}

/// Σ x[i]² in Double, summed in fixed blocks so the result does not depend on the thread count.
public func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
    let block = 1 << 16
    let blocks = (count + block - 1) / block
    var partial = [Double](repeating: 0, count: blocks)
    partial.withUnsafeMutableBufferPointer { out in
        ThreadPool.shared.parallelFor(blocks) { range in
            for b in range {
                let start = b * block, n = min(count, start + block) - start
                out[b] = Double(dot(x + start, x + start, n))
            }
        }
    }
    return partial.reduce(0, +)
}

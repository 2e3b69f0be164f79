import Foundation
import KeelCore

/// Softmax cross-entropy fused with its gradient: one pass over each row of logits.
public enum CrossEntropy {
    /// The target of a position that is not trained on (PyTorch's `ignore_index`, −100).
    public static let ignored: Int32 = -100

    /// How many of `count` targets the loss counts (those not `ignored`).
    public static func counted(_ targets: UnsafePointer<Int32>, count: Int) -> Int {
        (0..<count).reduce(0) { $0 + (targets[$1] == ignored ? 0 : 1) }
    }

    /// losses[n] = logsumexp(logits[n]) − logits[n, target[n]] for n in 0..<rows.
    ///
    /// When `gradientScale` is given, logits[n] is overwritten by (softmax − onehot) · gradientScale, the
    /// gradient of gradientScale · Σ losses; this saves a second logits-sized buffer.
    /// Targets lie in 0..<vocab (checked by the data path before the step), or are `ignored`: a position not trained
    /// on (a prompt's token under supervised fine-tuning), whose loss and gradient are 0.
    /// With `rowScales`, row n's gradient is scaled by gradientScale · rowScales[n] instead (the gradient of
    /// gradientScale · Σ rowScales[n] · losses[n]: a sequence's log-probability weighted, as preference optimisation
    /// and policy gradients weigh them).
    /// With a `temperature` T other than 1 the loss is that of the softmax of logits / T (the distribution a sampler at
    /// temperature T draws from: a policy's log-probabilities as GRPO scores its samples), and the gradient is with
    /// respect to the logits themselves.
    public static func forward(
        losses: UnsafeMutablePointer<Float>, logits: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>,
        rows: Int, vocab v: Int, gradientScale: Float?, rowScales: UnsafePointer<Float>? = nil, temperature: Float = 1
    ) {
        ThreadPool.shared.parallelFor(rows) { range in
            for r in range {
                let row = logits + r * v
                let target = Int(targets[r])
                guard target != Int(ignored) else {
                    losses[r] = 0
                    if gradientScale != nil { row.update(repeating: 0, count: v) }
                    continue
                }
                if temperature != 1 { scaleInPlace(row, count: v, by: 1 / temperature) }
                let maximum = rowMaximum(row, count: v)
                let targetLogit = row[target]
                guard let uniform = gradientScale else {
                    losses[r] = maximum + log(sumOfExponentials(row, count: v, shift: maximum)) - targetLogit
                    continue
                }
                // ∂/∂z of a loss of z / T is 1/T times its gradient in z / T.
                let scale = (rowScales.map { uniform * $0[r] } ?? uniform) / temperature
                let sum = exponentiate(row, count: v, shift: maximum)
                losses[r] = maximum + log(sum) - targetLogit
                scaleInPlace(row, count: v, by: scale / sum)
                row[target] -= scale
            }
        }
    }
}

/// Σ exp(x − shift) over `count` values, leaving x unchanged.
func sumOfExponentials(_ x: UnsafePointer<Float>, count: Int, shift: Float) -> Float {
    var total = Float16x(), j = 0
    let shifted = Float16x(repeating: shift)
    while j + 16 <= count { total += exp16(load16(x + j) - shifted); j += 16 }
    var sum = horizontalSum(total)
    while j < count { sum += expScalar(x[j] - shift); j += 1 }
    return sum
}

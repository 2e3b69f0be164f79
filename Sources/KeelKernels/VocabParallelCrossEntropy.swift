import Foundation
import KeelCore

/// Softmax cross-entropy over logits split by vocabulary across the ranks of a tensor-parallel group
/// (Megatron-LM's vocab-parallel loss): each rank holds the columns of its slice of the vocabulary, and no rank
/// ever holds a whole row of logits. The row maxima, the sums of exponentials and the target logits are
/// combined across the ranks by the caller's reductions (all-reduces over the tensor group), so per row only
/// three numbers cross the group.
public enum VocabParallelCrossEntropy {
    /// The cross-rank reductions of one call: each gets `rows` values of this rank and must leave in them the
    /// maximum (`maximum`) or the sum (`sum`) over the group's ranks; `sum` is called once with 2 · rows values.
    public struct Reductions {
        public var maximum: (UnsafeMutableBufferPointer<Float>) throws -> Void
        public var sum: (UnsafeMutableBufferPointer<Float>) throws -> Void

        public init(maximum: @escaping (UnsafeMutableBufferPointer<Float>) throws -> Void,
                    sum: @escaping (UnsafeMutableBufferPointer<Float>) throws -> Void) {
            self.maximum = maximum
            self.sum = sum
        }
    }

    /// losses[n] = logsumexp(whole row n) − logit(n, target[n]), on every rank, from this rank's `logits`
    /// [rows, slice.count]: the columns of vocabulary ids `slice`.
    ///
    /// With `gradientScale`, `logits` is overwritten by this rank's columns of (softmax − onehot) · gradientScale,
    /// as `CrossEntropy.forward` does for whole rows (and `rowScales` and `temperature` as there). Targets lie anywhere
    /// in the whole vocabulary, or are `CrossEntropy.ignored` (loss and gradient 0).
    public static func forward(
        losses: UnsafeMutablePointer<Float>, logits: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>,
        rows: Int, slice: Range<Int>, gradientScale: Float?, reductions: Reductions, rowScales: UnsafePointer<Float>? = nil,
        temperature: Float = 1
    ) throws {
        let v = slice.count
        // 1. The row maxima over the whole vocabulary, to shift every exponent (of the logits / T).
        let maxima = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows)
        defer { maxima.deallocate() }
        ThreadPool.shared.parallelFor(rows) { range in
            for r in range {
                if temperature != 1 { scaleInPlace(logits + r * v, count: v, by: 1 / temperature) }
                maxima[r] = v > 0 ? rowMaximum(logits + r * v, count: v) : -.infinity
            }
        }
        try reductions.maximum(maxima)

        // 2. Σ exp(logit − max) over the slice, and the target's logit where this rank holds it (0 elsewhere), both
        // summed over the group in one reduction. With a gradient, the exponentials stay in `logits`.
        let sums = UnsafeMutableBufferPointer<Float>.allocate(capacity: 2 * rows)
        defer { sums.deallocate() }
        ThreadPool.shared.parallelFor(rows) { range in
            for r in range {
                let row = logits + r * v, target = Int(targets[r])
                sums[rows + r] = slice.contains(target) ? row[target - slice.lowerBound] : 0
                sums[r] = gradientScale == nil ? sumOfExponentials(row, count: v, shift: maxima[r])
                    : (v > 0 ? exponentiate(row, count: v, shift: maxima[r]) : 0)
            }
        }
        try reductions.sum(sums)

        ThreadPool.shared.parallelFor(rows) { range in
            for r in range {
                let row = logits + r * v, target = Int(targets[r])
                guard target != Int(CrossEntropy.ignored) else {
                    losses[r] = 0
                    if gradientScale != nil { row.update(repeating: 0, count: v) }
                    continue
                }
                let sum = sums[r]
                losses[r] = maxima[r] + log(sum) - sums[rows + r]
                guard let uniform = gradientScale else { continue }
                let scale = (rowScales.map { uniform * $0[r] } ?? uniform) / temperature
                scaleInPlace(row, count: v, by: scale / sum)
                if slice.contains(target) { row[target - slice.lowerBound] -= scale }
            }
        }
    }
}

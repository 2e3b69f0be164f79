import Foundation
import KeelCore

/// Causal multi-head attention with grouped key/value heads, fused softmax and no T×T matrix in memory.
///
/// Input rows hold the projected queries, keys and values side by side, as the fused projection writes
/// them: `[q (H·d) | k (KV·d) | v (KV·d)]` per token. GPT-2 is the case KV = H. Query head h reads key and
/// value head h / (H / KV). The forward pass saves only the log-sum-exp of each softmax row; the backward
/// pass recomputes the probabilities from it (as FlashAttention does), so memory is O(B·H·T).
public struct CausalAttention: Sendable {
    public let batch: Int
    public let length: Int
    public let heads: Int
    public let kvHeads: Int
    public let headDim: Int

    public init(batch: Int, length: Int, heads: Int, kvHeads: Int, headDim: Int) {
        precondition(heads % kvHeads == 0, "heads must be a multiple of kvHeads")
        self.batch = batch
        self.length = length
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
    }

    /// Floats in one token's row of the fused q/k/v input.
    public var rowStride: Int { (heads + 2 * kvHeads) * headDim }
    /// Floats of scratch memory both passes need.
    public var scratchCount: Int { batch * heads * length }
    /// Floats in the saved log-sum-exp: [B, H, T].
    public var statsCount: Int { batch * heads * length }

    private var scale: Float { 1 / Float(headDim).squareRoot() }

    /// out: [B, T, H·d]; lse: [B, H, T]; scratch: `scratchCount` floats.
    public func forward(
        _ out: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        let t = length, d = headDim, stride = rowStride, width = heads * d
        let group = heads / kvHeads, scale = self.scale
        ThreadPool.shared.parallelFor(batch * heads) { items in
            for item in items {
                let b = item / heads, h = item % heads, g = h / group
                let base = qkv + b * t * stride
                let scores = scratch + item * t
                for i in 0..<t {
                    let q = base + i * stride + h * d
                    var maximum = -Float.infinity
                    for j in 0...i {
                        let s = dot(q, base + j * stride + (heads + g) * d, d) * scale
                        scores[j] = s
                        maximum = max(maximum, s)
                    }
                    let sum = exponentiate(scores, count: i + 1, shift: maximum)
                    let o = out + (b * t + i) * width + h * d
                    o.update(repeating: 0, count: d)
                    let inverse = 1 / sum
                    for j in 0...i {
                        axpy(scores[j] * inverse, base + j * stride + (heads + kvHeads + g) * d, o, d)
                    }
                    lse[item * t + i] = maximum + log(sum)
                }
            }
        }
    }

    /// dQKV: [B, T, rowStride] (overwritten) from dOut: [B, T, H·d].
    public func backward(
        dQKV: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, out: UnsafePointer<Float>,
        lse: UnsafePointer<Float>, qkv: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) {
        let t = length, d = headDim, stride = rowStride, width = heads * d
        let group = heads / kvHeads, scale = self.scale
        // Each item owns one key/value head of one sequence, hence its dk, dv and the dq of its query heads.
        ThreadPool.shared.parallelFor(batch * kvHeads) { items in
            for item in items {
                let b = item / kvHeads, g = item % kvHeads
                let base = qkv + b * t * stride, dBase = dQKV + b * t * stride
                let kOffset = (heads + g) * d, vOffset = (heads + kvHeads + g) * d
                for j in 0..<t {
                    (dBase + j * stride + kOffset).update(repeating: 0, count: d)
                    (dBase + j * stride + vOffset).update(repeating: 0, count: d)
                }
                let p = scratch + item * t
                for h in (g * group)..<((g + 1) * group) {
                    for i in 0..<t {
                        let q = base + i * stride + h * d
                        let dq = dBase + i * stride + h * d
                        let dO = dOut + (b * t + i) * width + h * d
                        let o = out + (b * t + i) * width + h * d
                        let rowLSE = lse[(b * heads + h) * t + i]
                        for j in 0...i {
                            p[j] = dot(q, base + j * stride + kOffset, d) * scale
                        }
                        _ = exponentiate(p, count: i + 1, shift: rowLSE)
                        let delta = dot(dO, o, d)
                        dq.update(repeating: 0, count: d)
                        for j in 0...i {
                            let dp = dot(dO, base + j * stride + vOffset, d)
                            let ds = p[j] * (dp - delta) * scale
                            axpy(ds, base + j * stride + kOffset, dq, d)
                            axpy(ds, q, dBase + j * stride + kOffset, d)
                            axpy(p[j], dO, dBase + j * stride + vOffset, d)
                        }
                    }
                }
            }
        }
    }
}

/// x[i] = e^(x[i] − shift) for i in 0..<count; returns the sum of the results.
@inline(__always)
func exponentiate(_ x: UnsafeMutablePointer<Float>, count: Int, shift: Float) -> Float {
    let s = Float16x(repeating: shift)
    var total = Float16x(), i = 0
    while i + 16 <= count {
        let e = exp16(load16(x + i) - s)
        store16(e, x + i)
        total += e
        i += 16
    }
    var sum = total.sum()
    while i < count {
        x[i] = expScalar(x[i] - shift)
        sum += x[i]
        i += 1
    }
    return sum
}

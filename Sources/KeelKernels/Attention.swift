import CBFloat16
import Foundation
import KeelCore

/// Causal multi-head attention with grouped key/value heads, fused softmax and no B·H·T×T tensor; optionally
/// restricted to each token's document (packed sequences: no attention across documents).
///
/// Input rows hold the projected queries, keys and values side by side, as the fused projection writes
/// them: `[q (H·d) | k (KV·d) | v (KV·d)]` per token. GPT-2 is the case KV = H. Query head h reads key and
/// value head h / (H / KV).
///
/// Each thread works through one (sequence, head) at a time in blocks of `blockRows` queries: the block's
/// scores against all earlier keys are one GEMM into per-thread scratch, the causal softmax is applied in
/// place, and the output is a second GEMM. Only the log-sum-exp of each softmax row is saved; the backward
/// pass recomputes the probabilities from it (as FlashAttention does). Memory: O(threads · blockRows · T)
/// scratch plus O(B·H·T) statistics. In bf16 the products read bf16-rounded operands (the probabilities
/// included) with fp32 accumulation, as the model's other products do; softmax runs in fp32.
public struct CausalAttention: Sendable {
    public let batch: Int
    public let length: Int
    public let heads: Int
    public let kvHeads: Int
    public let headDim: Int
    /// The operand format of the score and output products; softmax and its statistics stay fp32.
    public let precision: MatrixPrecision
    /// Queries per block: large enough for efficient GEMMs, small enough that scratch stays in cache.
    public static let blockRows = 64

    public init(batch: Int, length: Int, heads: Int, kvHeads: Int, headDim: Int, precision: MatrixPrecision = .float32) {
        precondition(heads % kvHeads == 0, "heads must be a multiple of kvHeads")
        self.batch = batch
        self.length = length
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.precision = precision
    }

    /// Floats in one token's row of the fused q/k/v input.
    public var rowStride: Int { (heads + 2 * kvHeads) * headDim }
    /// Floats of scratch memory both passes need: per thread of the shared pool, two score blocks and room
    /// to pack the operands of a bf16 product.
    public var scratchCount: Int { CausalAttention.scratchCount(maxLength: length, headDim: headDim, precision: precision) }

    /// Scratch for any sequence length up to `maxLength`, with products in `precision`.
    public static func scratchCount(maxLength: Int, headDim: Int, precision: MatrixPrecision) -> Int {
        ThreadPool.shared.threadCount * slotCount(length: maxLength, headDim: headDim, precision: precision)
    }

    /// Floats of one thread's scratch, a multiple of 16 so that every slot starts 64-byte aligned.
    private static func slotCount(length t: Int, headDim d: Int, precision: MatrixPrecision) -> Int {
        // The largest packing among the products: scores (rows × keys × d), outputs (rows × d × keys) and the
        // key/value gradients (keys × d × rows); where bf16 products read operands rounded beforehand, a head's
        // rounded Q, K, V and dO instead.
        func floats(_ m: Int, _ n: Int, _ k: Int) -> Int { (serialBFloat16ScratchBytes(m: m, n: n, k: k) + 3) / 4 }
        let packing = precision.readsRoundedOperands
            ? 4 * t * d : max(floats(blockRows, t, d), floats(blockRows, d, t), floats(t, d, blockRows))
        return (2 * blockRows * t + packing + 15) / 16 * 16
    }

    /// Whether this attention's products read Q, K, V, dO, the probabilities and dS rounded once beforehand (bf16 on
    /// the `blas` engine) instead of rounding each block's operands: a head's K and V are read by every block of
    /// queries, which would round them again and again. (The forward pass works per query head, and a thread rounds
    /// a key/value head's K and V once for its run of that group's query heads; the backward pass, per key/value head,
    /// once for all.)
    private var roundsOnce: Bool { precision.readsRoundedOperands }

    /// Rounds the t × d matrix `head` (row stride `ld`) into the `slot`-th t × d block of `space` (dense rows, one of
    /// the four a thread's packing space holds); returns where it begins.
    @discardableResult
    private func rounded(_ head: UnsafePointer<Float>, ld: Int, into space: UnsafeMutableRawPointer, slot: Int)
        -> UnsafePointer<Float> {
        let destination = UnsafeMutablePointer(mutating: packingBlock(space, slot: slot))
        roundToBFloat16(rows: length, columns: headDim, head, ld: ld, into: destination, ldOut: headDim)
        return UnsafePointer(destination)
    }

    /// The `slot`-th t × d block of a thread's packing space `space`.
    private func packingBlock(_ space: UnsafeMutableRawPointer, slot: Int) -> UnsafePointer<Float> {
        UnsafePointer(space.assumingMemoryBound(to: Float.self) + slot * length * headDim)
    }

    /// Thread `slot`'s two score blocks and its packing space.
    private func slotScratch(_ scratch: UnsafeMutablePointer<Float>, _ slot: Int)
        -> (scores: UnsafeMutablePointer<Float>, packing: UnsafeMutableRawPointer) {
        let start = scratch + slot * CausalAttention.slotCount(length: length, headDim: headDim, precision: precision)
        return (start, UnsafeMutableRawPointer(start + 2 * CausalAttention.blockRows * length))
    }

    /// One of the block products, on the calling thread: OpenBLAS in fp32 or on operands rounded beforehand
    /// (`roundsOnce`), bf16 tiles in bf16.
    @inline(__always)
    private func product(
        _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float = 1,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int, packing: UnsafeMutableRawPointer
    ) {
        if precision == .float32 || roundsOnce {
            serialGemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc)
        } else {
            serialBFloat16Gemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, c,
                               ldc: ldc, scratch: packing)
        }
    }
    /// Floats in the saved log-sum-exp: [B, H, T].
    public var statsCount: Int { batch * heads * length }

    private var scale: Float { 1 / Float(headDim).squareRoot() }

    /// The keys a block of queries `start..<start + rows` of sequence `b` sees: from the first of their documents'
    /// starts (0 without documents) to the block's end; and query i's own first key.
    @inline(__always)
    private func visibleKeys(_ documents: UnsafePointer<Int32>?, b: Int, start: Int, rows: Int)
        -> (first: Int, keys: Int, rowStart: (Int) -> Int) {
        guard let documents else { return (0, start + rows, { _ in 0 }) }
        let starts = documents + b * length
        // Starts never decrease along a sequence: the block's first row has the earliest.
        return (Int(starts[start]), start + rows, { Int(starts[start + $0]) })
    }

    /// out: [B, T, H·d]; lse: [B, H, T]; scratch: `scratchCount` floats. With `documents` ([B, T]: the index of the
    /// first token of each token's document in its sequence), a query sees only the earlier keys of its own
    /// document — packed sequences attend as if each document were alone; without, every earlier key.
    public func forward(
        _ out: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
        scratch: UnsafeMutablePointer<Float>, documents: UnsafePointer<Int32>? = nil
    ) {
        let t = length, d = headDim, stride = rowStride, width = heads * d
        let group = heads / kvHeads, scale = self.scale, block = CausalAttention.blockRows
        ThreadPool.shared.parallelChunks(batch * heads) { slot, items in
            let (scores, packing) = slotScratch(scratch, slot)
            // The key/value head (b · kvHeads + g) whose rounded K and V packing slots 1 and 2 hold: a group's query
            // heads are consecutive items, and the products (reading rounded operands) leave the slots alone.
            var roundedKeys: Int?
            for item in items {
                let b = item / heads, h = item % heads, g = h / group
                let base = qkv + b * t * stride
                var (q, k, v, ld) = (base + h * d, base + (heads + g) * d, base + (heads + kvHeads + g) * d, stride)
                if roundsOnce {
                    if roundedKeys != b * kvHeads + g {
                        rounded(k, ld: stride, into: packing, slot: 1)
                        rounded(v, ld: stride, into: packing, slot: 2)
                        roundedKeys = b * kvHeads + g
                    }
                    (q, k, v, ld) = (rounded(q, ld: stride, into: packing, slot: 0), packingBlock(packing, slot: 1),
                                     packingBlock(packing, slot: 2), d)
                }
                let o = out + b * t * width + h * d
                for start in Swift.stride(from: 0, to: t, by: block) {
                    let rows = min(block, t - start)
                    let (first, end, rowStart) = visibleKeys(documents, b: b, start: start, rows: rows)
                    let keys = end - first
                    // S[rows, keys] = scale · Q_block · K[first..<end]ᵀ
                    product(.none, .transposed, m: rows, n: keys, k: d, alpha: scale, q + start * ld,
                               lda: ld, k + first * ld, ldb: ld, beta: 0, scores, ldc: keys, packing: packing)
                    for i in 0..<rows {
                        // Row i sees keys from its document's start through itself; the others get probability 0.
                        let hidden = rowStart(i) - first, visible = start + i + 1 - first - hidden
                        let row = scores + i * keys + hidden
                        let maximum = rowMaximum(row, count: visible)
                        let sum = exponentiate(row, count: visible, shift: maximum)
                        scaleInPlace(row, count: visible, by: 1 / sum)
                        (scores + i * keys).update(repeating: 0, count: hidden)
                        (row + visible).update(repeating: 0, count: keys - hidden - visible)
                        lse[item * t + start + i] = maximum + log(sum)
                    }
                    if roundsOnce { roundInPlace(scores, count: rows * keys) }
                    // O_block = P · V[first..<end]
                    product(.none, .none, m: rows, n: d, k: keys, scores, lda: keys, v + first * ld, ldb: ld,
                               beta: 0, o + start * width, ldc: width, packing: packing)
                }
            }
        }
    }

    /// dQKV: [B, T, rowStride] (overwritten) from dOut: [B, T, H·d]; `documents` as the forward pass had them.
    public func backward(
        dQKV: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, out: UnsafePointer<Float>,
        lse: UnsafePointer<Float>, qkv: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>,
        documents: UnsafePointer<Int32>? = nil
    ) {
        let t = length, d = headDim, stride = rowStride, width = heads * d
        let group = heads / kvHeads, scale = self.scale, block = CausalAttention.blockRows
        // Each item owns one key/value head of one sequence, hence its dk, dv and the dq of its query heads.
        ThreadPool.shared.parallelChunks(batch * kvHeads) { slot, items in
            let (p, packing) = slotScratch(scratch, slot)
            let dp = p + block * t
            for item in items {
                let b = item / kvHeads, g = item % kvHeads
                let base = qkv + b * t * stride, dBase = dQKV + b * t * stride
                var (k, v, ld) = (base + (heads + g) * d, base + (heads + kvHeads + g) * d, stride)
                if roundsOnce {
                    (k, v, ld) = (rounded(k, ld: stride, into: packing, slot: 0), rounded(v, ld: stride, into: packing, slot: 1), d)
                }
                let dk = dBase + (heads + g) * d, dv = dBase + (heads + kvHeads + g) * d
                for j in 0..<t {
                    (dk + j * stride).update(repeating: 0, count: d)
                    (dv + j * stride).update(repeating: 0, count: d)
                }
                for h in (g * group)..<((g + 1) * group) {
                    let dq = dBase + h * d
                    let o = out + b * t * width + h * d, dO = dOut + b * t * width + h * d
                    // The products' Q and dO (rounded after K and V where `roundsOnce`); delta reads dO in fp32.
                    var (q, productDO, ldO) = (base + h * d, dO, width)
                    if roundsOnce {
                        (q, productDO, ldO) = (rounded(q, ld: stride, into: packing, slot: 2), rounded(dO, ld: width, into: packing, slot: 3), d)
                    }
                    let rowLSE = lse + (b * heads + h) * t
                    for start in Swift.stride(from: 0, to: t, by: block) {
                        let rows = min(block, t - start)
                        let (first, end, rowStart) = visibleKeys(documents, b: b, start: start, rows: rows)
                        let keys = end - first
                        let qBlock = q + start * ld, dOBlock = dO + start * width, productDOBlock = productDO + start * ldO
                        let kKeys = k + first * ld, vKeys = v + first * ld
                        // P = exp(scale · Q Kᵀ − lse) over the keys each row sees
                        product(.none, .transposed, m: rows, n: keys, k: d, alpha: scale, qBlock, lda: ld,
                                   kKeys, ldb: ld, beta: 0, p, ldc: keys, packing: packing)
                        for i in 0..<rows {
                            let hidden = rowStart(i) - first, visible = start + i + 1 - first - hidden
                            _ = exponentiate(p + i * keys + hidden, count: visible, shift: rowLSE[start + i])
                            (p + i * keys).update(repeating: 0, count: hidden)
                            (p + i * keys + hidden + visible).update(repeating: 0, count: keys - hidden - visible)
                        }
                        // dP = dO_block · Vᵀ
                        product(.none, .transposed, m: rows, n: keys, k: d, productDOBlock, lda: ldO, vKeys, ldb: ld,
                                   beta: 0, dp, ldc: keys, packing: packing)
                        // dS = P ∘ (dP − rowsum(dO ∘ O)) · scale, zero where P is (from P in fp32, before it is
                        // rounded for dV's product)
                        for i in 0..<rows {
                            let hidden = rowStart(i) - first, visible = start + i + 1 - first - hidden
                            let delta = dot(dOBlock + i * width, o + (start + i) * width, d)
                            softmaxBackward(dp + i * keys + hidden, p + i * keys + hidden, count: visible, delta: delta,
                                            scale: scale)
                            (dp + i * keys).update(repeating: 0, count: hidden)
                            (dp + i * keys + hidden + visible).update(repeating: 0, count: keys - hidden - visible)
                        }
                        if roundsOnce {
                            roundInPlace(p, count: rows * keys)
                            roundInPlace(dp, count: rows * keys)
                        }
                        // dV += Pᵀ · dO_block
                        product(.transposed, .none, m: keys, n: d, k: rows, p, lda: keys, productDOBlock, ldb: ldO,
                                   beta: 1, dv + first * stride, ldc: stride, packing: packing)
                        // dQ_block = dS · K;  dK += dSᵀ · Q_block
                        product(.none, .none, m: rows, n: d, k: keys, dp, lda: keys, kKeys, ldb: ld, beta: 0,
                                   dq + start * stride, ldc: stride, packing: packing)
                        product(.transposed, .none, m: keys, n: d, k: rows, dp, lda: keys, qBlock, ldb: ld,
                                   beta: 1, dk + first * stride, ldc: stride, packing: packing)
                    }
                }
            }
        }
    }
}

/// max(x[0..<count]).
@inline(__always)
func rowMaximum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var m16 = Float16x(repeating: -.infinity), i = 0
    while i + 16 <= count { m16 = larger(m16, load16(x + i)); i += 16 }
    var maximum = horizontalMax(m16)
    while i < count { maximum = max(maximum, x[i]); i += 1 }
    return maximum
}

/// x[i] *= factor for i in 0..<count (on the calling thread).
@inline(__always)
func scaleInPlace(_ x: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
    let f = Float16x(repeating: factor)
    var i = 0
    while i + 16 <= count { store16(load16(x + i) * f, x + i); i += 16 }
    while i < count { x[i] *= factor; i += 1 }
}

/// dp[i] = p[i] · (dp[i] − delta) · scale for i in 0..<count.
@inline(__always)
func softmaxBackward(_ dp: UnsafeMutablePointer<Float>, _ p: UnsafePointer<Float>, count: Int, delta: Float, scale: Float) {
    let d = Float16x(repeating: delta), s = Float16x(repeating: scale)
    var i = 0
    while i + 16 <= count { store16(load16(p + i) * (load16(dp + i) - d) * s, dp + i); i += 16 }
    while i < count { dp[i] = p[i] * (dp[i] - delta) * scale; i += 1 }
}

/// x[i] = e^(x[i] − max x) / Σ_j e^(x[j] − max x) for i in 0..<count, in place: the softmax of a row of attention
/// scores, as this file's training attention computes it (`exp16`).
public func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    let sum = exponentiate(x, count: count, shift: rowMaximum(x, count: count))
    scaleInPlace(x, count: count, by: 1 / sum)
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
    var sum = horizontalSum(total)
    // The last partial vector's exponentials in one `exp16` (the same values `expScalar` gives one at a time, at a
    // sixteenth of the cost: a prompt's rows of scores are short, and per-element tails had cost more than their
    // whole vectors), added in the same order as ever.
    let rest = count - i
    if rest > 0 {
        var tail = Float16x()
        for lane in 0..<rest { tail[lane] = x[i + lane] }
        tail = exp16(tail - s)
        for lane in 0..<rest {
            x[i + lane] = tail[lane]
            sum += tail[lane]
        }
    }
    return sum
}

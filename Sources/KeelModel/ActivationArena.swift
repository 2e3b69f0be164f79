import KeelCore
import KeelKernels

/// Every activation the backward pass needs, preallocated for up to `rows` tokens (B·T), so the training
/// step never allocates. The residual stream and the norms' statistics have `streamRows` rows: all of them, or
/// under sequence parallelism this tensor rank's share (marked [S, …] below).
final class ActivationArena {
    /// What one transformer block saves.
    struct Block {
        let mid: FloatBuffer  // [S, C]
        let norm1, norm2: FloatBuffer  // [N, C]: the column-parallel projections' inputs
        let mean1, rstd1, mean2, rstd2: FloatBuffer  // [S]
        // H, KV and F are this rank's share under tensor parallelism (`LocalShape`).
        let qkv: FloatBuffer  // [N, (H + 2KV)·d]
        let attention: FloatBuffer  // [N, H·d]
        let lse: FloatBuffer  // [B, H, T]
        let hidden: FloatBuffer  // [N, F] (GPT-2) or [N, 2F] (Llama: gate | up)
        let activated: FloatBuffer  // [N, F]
    }

    let rows: Int
    /// The shape of the batch whose activations the arena holds now (at most `rows` tokens).
    var batch = 0, length = 0
    let residuals: [FloatBuffer]  // L + 1 of [S, C]: the stream entering each of the L blocks, then their output
    let blocks: [Block]
    let finalNorm: FloatBuffer  // [N, C]
    let finalMean: FloatBuffer, finalRstd: FloatBuffer  // [S]
    /// Logits of one chunk of rows, [headRows, V] (V: this rank's vocabulary): the loss never needs all N × V
    /// at once.
    let headLogits: FloatBuffer
    let headRows: Int
    /// All N × V logits, allocated only when a forward pass without targets asks for them (sampling).
    private(set) var fullLogits: FloatBuffer?
    let losses: FloatBuffer  // [N]
    let inputs: UnsafeMutableBufferPointer<Int32>
    let targets: UnsafeMutableBufferPointer<Int32>
    /// Each token's document start in its sequence ([N]), when the batch packs documents (`hasDocuments`).
    let documents: UnsafeMutableBufferPointer<Int32>
    var hasDocuments = false
    // Backward scratch, reused by every block.
    let dResidual: FloatBuffer  // [S, C]
    let dNorm: FloatBuffer
    let dQKV, dAttention, dHidden, dActivated, attentionScratch: FloatBuffer
    /// Sequence parallelism only: a [N, C] matrix the group sums from (row-parallel outputs) or gathers into
    /// (the stream's gradient), and the [S, C] rows of a summed input gradient.
    let sequenceScratch, dStreamScratch: FloatBuffer?

    /// Room for `layers` blocks (a pipeline stage's) over `n` rows, in `shape`'s sizes, with `attentionScratchCount`
    /// floats of attention's scratch (`CausalAttention.scratchCount`); the stream holds `rows / streamDivisor` of them
    /// (the tensor size under sequence parallelism, else 1).
    init(config: ModelConfig, shape: LocalShape, layers: Int, rows n: Int, attentionScratchCount: Int, streamDivisor: Int = 1) {
        rows = n
        let c = config.width, h = shape.heads, d = shape.headDim, f = shape.hiddenWidth, s = n / streamDivisor
        let qkvWidth = shape.qkvWidth
        let hiddenWidth = f * (config.architecture == .llama ? 2 : 1)
        residuals = (0...layers).map { _ in FloatBuffer(count: s * c) }
        blocks = (0..<layers).map { _ in
            Block(
                mid: FloatBuffer(count: s * c), norm1: FloatBuffer(count: n * c), norm2: FloatBuffer(count: n * c),
                mean1: FloatBuffer(count: s), rstd1: FloatBuffer(count: s), mean2: FloatBuffer(count: s),
                rstd2: FloatBuffer(count: s), qkv: FloatBuffer(count: n * qkvWidth),
                attention: FloatBuffer(count: n * h * d), lse: FloatBuffer(count: n * h),
                hidden: FloatBuffer(count: n * hiddenWidth), activated: FloatBuffer(count: n * f))
        }
        finalNorm = FloatBuffer(count: n * c)
        finalMean = FloatBuffer(count: s)
        finalRstd = FloatBuffer(count: s)
        sequenceScratch = streamDivisor > 1 ? FloatBuffer(count: n * c) : nil
        dStreamScratch = streamDivisor > 1 ? FloatBuffer(count: s * c) : nil
        headRows = min(n, ActivationArena.headChunkRows)
        headLogits = FloatBuffer(count: headRows * shape.vocabulary.count)
        losses = FloatBuffer(count: n)
        inputs = .allocate(capacity: n)
        targets = .allocate(capacity: n)
        documents = .allocate(capacity: n)
        inputs.initialize(repeating: 0)
        targets.initialize(repeating: 0)
        documents.initialize(repeating: 0)
        dResidual = FloatBuffer(count: s * c)
        dNorm = FloatBuffer(count: n * c)
        dQKV = FloatBuffer(count: n * qkvWidth)
        dAttention = FloatBuffer(count: n * h * d)
        dHidden = FloatBuffer(count: n * hiddenWidth)
        dActivated = FloatBuffer(count: n * f)
        attentionScratch = FloatBuffer(count: attentionScratchCount)
    }

    /// What a split backward pass keeps for its weight-gradient half: each block's projection output
    /// gradients, and the gradient reaching the embedding.
    final class Deferred {
        struct Block {
            let down, up, attentionOutput, qkv: FloatBuffer
        }

        let blocks: [Block]
        let embedding: FloatBuffer

        init(config: ModelConfig, shape: LocalShape, layers: Int, rows n: Int) {
            let c = config.width, qkvWidth = shape.qkvWidth
            let hiddenWidth = shape.hiddenWidth * (config.architecture == .llama ? 2 : 1)
            blocks = (0..<layers).map { _ in
                Block(down: FloatBuffer(count: n * c), up: FloatBuffer(count: n * hiddenWidth),
                      attentionOutput: FloatBuffer(count: n * c), qkv: FloatBuffer(count: n * qkvWidth))
            }
            embedding = FloatBuffer(count: n * c)
        }
    }

    /// Allocated by the first split backward pass through this arena.
    var deferred: Deferred?

    /// Rows of logits computed at a time by the loss: 256 × 50,304 floats is 51 MB, against 206 MB for a
    /// whole 1,024-token batch, and large enough for efficient matrix products.
    static let headChunkRows = 256

    /// A buffer for all N × V logits.
    func allLogits(vocabulary: Int) -> FloatBuffer {
        if let fullLogits { return fullLogits }
        let buffer = FloatBuffer(count: rows * vocabulary)
        fullLogits = buffer
        return buffer
    }

    deinit {
        inputs.deallocate()
        documents.deallocate()
        targets.deallocate()
    }
}

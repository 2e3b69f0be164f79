import KeelCore
import KeelKernels

/// Every activation the backward pass needs, preallocated for up to `rows` tokens (B·T), so the training
/// step never allocates.
final class ActivationArena {
    /// What one transformer block saves.
    struct Block {
        let mid, norm1, norm2: FloatBuffer  // [N, C]
        let mean1, rstd1, mean2, rstd2: FloatBuffer  // [N]
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
    let residuals: [FloatBuffer]  // L + 1 of [N, C]: the stream entering each of the L blocks, then their output
    let blocks: [Block]
    let finalNorm: FloatBuffer, finalMean: FloatBuffer, finalRstd: FloatBuffer
    /// Logits of one chunk of rows, [headRows, V] (V: this rank's vocabulary): the loss never needs all N × V
    /// at once.
    let headLogits: FloatBuffer
    let headRows: Int
    /// All N × V logits, allocated only when a forward pass without targets asks for them (sampling).
    private(set) var fullLogits: FloatBuffer?
    let losses: FloatBuffer  // [N]
    let inputs: UnsafeMutableBufferPointer<Int32>
    let targets: UnsafeMutableBufferPointer<Int32>
    // Backward scratch, reused by every block.
    let dResidual, dNorm: FloatBuffer
    let dQKV, dAttention, dHidden, dActivated, attentionScratch: FloatBuffer

    /// Room for `layers` blocks (a pipeline stage's) over `n` rows, in `shape`'s sizes.
    init(config: ModelConfig, shape: LocalShape, layers: Int, rows n: Int) {
        rows = n
        let c = config.width, h = shape.heads, d = shape.headDim, f = shape.hiddenWidth
        let qkvWidth = shape.qkvWidth
        let hiddenWidth = f * (config.architecture == .llama ? 2 : 1)
        residuals = (0...layers).map { _ in FloatBuffer(count: n * c) }
        blocks = (0..<layers).map { _ in
            Block(
                mid: FloatBuffer(count: n * c), norm1: FloatBuffer(count: n * c), norm2: FloatBuffer(count: n * c),
                mean1: FloatBuffer(count: n), rstd1: FloatBuffer(count: n), mean2: FloatBuffer(count: n),
                rstd2: FloatBuffer(count: n), qkv: FloatBuffer(count: n * qkvWidth),
                attention: FloatBuffer(count: n * h * d), lse: FloatBuffer(count: n * h),
                hidden: FloatBuffer(count: n * hiddenWidth), activated: FloatBuffer(count: n * f))
        }
        finalNorm = FloatBuffer(count: n * c)
        finalMean = FloatBuffer(count: n)
        finalRstd = FloatBuffer(count: n)
        headRows = min(n, ActivationArena.headChunkRows)
        headLogits = FloatBuffer(count: headRows * shape.vocabulary.count)
        losses = FloatBuffer(count: n)
        inputs = .allocate(capacity: n)
        targets = .allocate(capacity: n)
        inputs.initialize(repeating: 0)
        targets.initialize(repeating: 0)
        dResidual = FloatBuffer(count: n * c)
        dNorm = FloatBuffer(count: n * c)
        dQKV = FloatBuffer(count: n * qkvWidth)
        dAttention = FloatBuffer(count: n * h * d)
        dHidden = FloatBuffer(count: n * hiddenWidth)
        dActivated = FloatBuffer(count: n * f)
        attentionScratch = FloatBuffer(count: CausalAttention.scratchCount(maxLength: config.maxLength, headDim: d))
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
        targets.deallocate()
    }
}

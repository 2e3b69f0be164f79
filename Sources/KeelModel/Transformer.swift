import KeelCore
import KeelKernels

/// A decoder-only transformer (GPT-2 or Llama) with explicit forward and backward passes over one flat
/// parameter buffer and one flat gradient buffer.
///
/// Usage per micro-batch: `forward(inputs:targets:…)` with a `lossScale` computes the loss (and, chunk by
/// chunk, the output head's gradients); `backward()` then adds every other parameter's gradient into `gradients`
/// (callers zero it once per optimizer step, which is what makes gradient accumulation work).
public final class Transformer: @unchecked Sendable {
    public let config: ModelConfig
    public let table: ParameterTable
    /// All parameters, laid out by `table`.
    public let parameters: FloatBuffer
    /// All gradients, same layout as `parameters`.
    public let gradients: FloatBuffer

    private let blocks: [BlockParameters]
    private let tokenEmbedding: Int
    private let positionEmbedding: Int?
    private let finalNorm: Norm
    private let head: Int
    private let rope: RotaryEmbedding?
    private var arena: ActivationArena?
    private var shape = (batch: 0, length: 0)
    /// When set, every kernel call is timed into it (`keel bench --profile`).
    public var profiler: Profiler?
    /// The operand format of every matrix product (projections, the head and attention's products);
    /// `.bfloat16` needs `BFloat16Engine.selected`.
    public var matrixPrecision: MatrixPrecision = .float32
    private lazy var headPack = PackedLinearWeight()
    /// bf16 training: the head's ∂loss/∂logitsᵀ over all rows, packed chunk by chunk for its weight gradient.
    private lazy var headGradientPack = PackedLeftOperand()
    /// When set, called with each span of `gradients` as soon as a training pass has finished writing it
    /// (the untied output head at the end of `forward`, the rest during `backward`, last layer first), so
    /// data parallelism can start communicating while the backward pass continues.
    public var gradientsReady: ((Range<Int>) -> Void)?
    /// Spans of `gradients` in the order `gradientsReady` reports them.
    private let headSpan: Range<Int>?
    private let finalNormSpan: Range<Int>
    private let embeddingSpan: Range<Int>

    /// Offsets of one block's parameters and the shapes of its projections.
    private struct BlockParameters {
        let norm1, norm2: Norm
        let qkv, projection, up, down: Projection
        let span: Range<Int>
    }

    /// A normalisation layer's parameters (bias only for LayerNorm).
    private struct Norm {
        let weight: Int
        let bias: Int?
    }

    /// A linear layer's parameters and shape.
    private struct Projection {
        let weight: Int
        let bias: Int?
        let shape: LinearShape
    }

    /// Builds the model with freshly initialised parameters.
    public init(config: ModelConfig, seed: UInt64) throws {
        try config.validate()
        self.config = config
        table = ParameterTable(config: config)
        parameters = FloatBuffer(count: table.count)
        gradients = FloatBuffer(count: table.count)
        table.initialize(parameters, seed: seed)

        let c = config.width, f = config.hiddenWidth, d = config.headDim
        let t = table
        switch config.architecture {
        case .gpt2:
            tokenEmbedding = t.offset("transformer.wte.weight")
            positionEmbedding = t.offset("transformer.wpe.weight")
            finalNorm = Norm(weight: t.offset("transformer.ln_f.weight"), bias: t.offset("transformer.ln_f.bias"))
            head = tokenEmbedding
            rope = nil
            blocks = (0..<config.layers).map { l in
                let p = "transformer.h.\(l)."
                func projection(_ name: String, _ i: Int, _ o: Int) -> Projection {
                    Projection(weight: t.offset(p + name + ".weight"), bias: t.offset(p + name + ".bias"),
                               shape: LinearShape(inFeatures: i, outFeatures: o, layout: .inputMajor))
                }
                return BlockParameters(
                    norm1: Norm(weight: t.offset(p + "ln_1.weight"), bias: t.offset(p + "ln_1.bias")),
                    norm2: Norm(weight: t.offset(p + "ln_2.weight"), bias: t.offset(p + "ln_2.bias")),
                    qkv: projection("attn.c_attn", c, 3 * c), projection: projection("attn.c_proj", c, c),
                    up: projection("mlp.c_fc", c, f), down: projection("mlp.c_proj", f, c),
                    span: t.range(ofPrefix: p))
            }
            headSpan = nil
            finalNormSpan = t.range(ofPrefix: "transformer.ln_f.")
            embeddingSpan = t.range(ofPrefix: "transformer.w")
        case .llama:
            tokenEmbedding = t.offset("model.embed_tokens.weight")
            positionEmbedding = nil
            finalNorm = Norm(weight: t.offset("model.norm.weight"), bias: nil)
            head = t.offset("lm_head.weight")
            rope = RotaryEmbedding(headDim: d, maxLength: config.maxLength, theta: config.ropeTheta)
            let q = config.heads * d, kv = config.kvHeads * d
            blocks = (0..<config.layers).map { l in
                let p = "model.layers.\(l)."
                // q/k/v and gate/up are adjacent in the table, so each group is one [out, in] matrix.
                func projection(_ name: String, _ i: Int, _ o: Int) -> Projection {
                    Projection(weight: t.offset(p + name + ".weight"), bias: nil,
                               shape: LinearShape(inFeatures: i, outFeatures: o, layout: .outputMajor))
                }
                return BlockParameters(
                    norm1: Norm(weight: t.offset(p + "input_layernorm.weight"), bias: nil),
                    norm2: Norm(weight: t.offset(p + "post_attention_layernorm.weight"), bias: nil),
                    qkv: projection("self_attn.q_proj", c, q + 2 * kv), projection: projection("self_attn.o_proj", q, c),
                    up: projection("mlp.gate_proj", c, 2 * f), down: projection("mlp.down_proj", f, c),
                    span: t.range(ofPrefix: p))
            }
            headSpan = t.range(ofPrefix: "lm_head.")
            finalNormSpan = t.range(ofPrefix: "model.norm.")
            embeddingSpan = t.range(ofPrefix: "model.embed_tokens.")
        }
    }

    /// Runs the model on `inputs` ([batch, length] token ids, each in `0..<vocabSize`).
    ///
    /// With `targets`, returns the mean cross-entropy over all positions; with `lossScale` as well,
    /// prepares `backward()` to add the gradient of `lossScale · mean loss`. Without targets returns 0 and
    /// leaves the logits readable through `logits(row:)`.
    @discardableResult
    public func forward(
        inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>?, batch: Int, length: Int, lossScale: Float? = nil
    ) -> Float {
        precondition(length <= config.maxLength, "sequence longer than max_seq_len")
        let n = batch * length, c = config.width, v = config.vocabSize
        if arena == nil || arena!.rows < n { arena = ActivationArena(config: config, rows: n) }
        let a = arena!
        shape = (batch, length)
        a.inputs.baseAddress!.update(from: inputs, count: n)
        let p = parameters.pointer
        let attention = attentionShape

        profiled(.embedding, .forward, bytes: 8 * Double(n * c)) {
            Embedding.forward(a.residuals[0].pointer, tokens: inputs, table: p + tokenEmbedding,
                              positions: positionEmbedding.map { p + $0 }, rows: n, length: length, columns: c)
        }
        for (l, block) in blocks.enumerated() {
            let s = a.blocks[l], x = a.residuals[l].pointer, out = a.residuals[l + 1].pointer
            normalize(s.norm1.pointer, s.mean1.pointer, s.rstd1.pointer, x, block.norm1, rows: n)
            project(s.qkv.pointer, s.norm1.pointer, block.qkv, rows: n)
            profiled(.attention, .forward, flops: attentionFlops(.forward)) {
                rope?.apply(s.qkv.pointer, batch: batch, length: length, stride: attention.rowStride,
                            heads: config.heads + config.kvHeads)
                attention.forward(s.attention.pointer, lse: s.lse.pointer, qkv: s.qkv.pointer,
                                  scratch: a.attentionScratch.pointer)
            }
            project(s.mid.pointer, s.attention.pointer, block.projection, rows: n)
            profiled(.residual, .forward, bytes: 12 * Double(n * c)) { addInPlace(x, into: s.mid.pointer, count: n * c) }
            normalize(s.norm2.pointer, s.mean2.pointer, s.rstd2.pointer, s.mid.pointer, block.norm2, rows: n)
            project(s.hidden.pointer, s.norm2.pointer, block.up, rows: n)
            profiled(.activation, .forward, bytes: 12 * Double(n * config.hiddenWidth)) {
                switch config.architecture {
                case .gpt2: GELU.forward(s.activated.pointer, s.hidden.pointer, count: n * config.hiddenWidth)
                case .llama: SwiGLU.forward(s.activated.pointer, s.hidden.pointer, rows: n, width: config.hiddenWidth)
                }
            }
            project(out, s.activated.pointer, block.down, rows: n)
            profiled(.residual, .forward, bytes: 12 * Double(n * c)) { addInPlace(s.mid.pointer, into: out, count: n * c) }
        }
        normalize(a.finalNorm.pointer, a.finalMean.pointer, a.finalRstd.pointer, a.residuals[config.layers].pointer,
                  finalNorm, rows: n)

        guard let targets else {
            let logits = a.allLogits(vocabulary: v)
            profiled(.matmul, .forward, flops: 2 * Double(n * c * v)) {
                headShape.forward(logits.pointer, a.finalNorm.pointer, weight: p + head, bias: nil, rows: n,
                                  precision: matrixPrecision)
            }
            return 0
        }
        a.targets.baseAddress!.update(from: targets, count: n)
        // The head and the loss run in chunks of rows so the N × V logits never exist at once. In a training
        // pass each chunk's ∂loss/∂logits goes straight into the head's backward: its input gradient lands in
        // dNorm for `backward()`, its weight gradient in `gradients`.
        let g = gradients.pointer
        // In bf16 the head's weight is rounded and packed once for all chunks, not once per chunk and product.
        let packedHead = matrixPrecision == .bfloat16 ? headPack : nil
        if let packedHead { headShape.pack(p + head, into: packedHead) }
        // And its weight gradient is one product over all rows after the loop: each chunk packs its ∂loss/∂logitsᵀ
        // as a slice of that product's K, where a product per chunk would read and write the whole V × C gradient.
        let headGradient = packedHead != nil && lossScale != nil ? headGradientPack : nil
        headGradient?.reserve(m: v, k: n)
        var start = 0
        while start < n {
            let rows = min(a.headRows, n - start)
            let x = a.finalNorm.pointer + start * c
            profiled(.matmul, .forward, flops: 2 * Double(rows * c * v)) {
                headShape.forward(a.headLogits.pointer, x, weight: p + head, bias: nil, rows: rows,
                                  precision: matrixPrecision, packed: packedHead)
            }
            profiled(.loss, .forward, bytes: 12 * Double(rows * v)) {
                CrossEntropy.forward(losses: a.losses.pointer + start, logits: a.headLogits.pointer, targets: targets + start,
                                     rows: rows, vocab: v, gradientScale: lossScale.map { $0 / Float(n) })
            }
            if let headGradient {
                profiled(.matmul, .backward, flops: 2 * Double(rows * c * v)) {
                    headShape.inputGradient(a.dNorm.pointer + start * c, accumulate: false, dOut: a.headLogits.pointer,
                                            weight: p + head, rows: rows, packed: packedHead)
                    headGradient.pack(.transposed, columns: rows, offset: start, a.headLogits.pointer, lda: v)
                }
            } else if lossScale != nil {
                profiled(.matmul, .backward, flops: 4 * Double(rows * c * v)) {
                    headShape.backward(dInput: a.dNorm.pointer + start * c, accumulateInput: false, dWeight: g + head,
                                       dBias: nil, dOut: a.headLogits.pointer, input: x, weight: p + head, rows: rows,
                                       precision: matrixPrecision)
                }
            }
            start += rows
        }
        if let headGradient {  // dW[V, C] += (∂loss/∂logits)ᵀ · x, over all N rows at once
            profiled(.matmul, .backward, flops: 2 * Double(n * c * v)) {
                gemm(packed: headGradient, .none, n: c, a.finalNorm.pointer, beta: 1, g + head)
            }
        }
        if lossScale != nil, let headSpan { gradientsReady?(headSpan) }
        var total = 0.0
        for i in 0..<n { total += Double(a.losses.pointer[i]) }
        return Float(total / Double(n))
    }

    /// The logits of one row (b·length + t) of the last forward pass without targets.
    public func logits(row: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: arena!.allLogits(vocabulary: config.vocabSize).pointer + row * config.vocabSize,
                            count: config.vocabSize)
    }

    /// Adds the rest of the gradient of the last training forward pass into `gradients` (the output head's
    /// share was added during that pass). Call it right after that pass.
    public func backward() {
        guard let a = arena else { preconditionFailure("backward() before forward()") }
        let (batch, length) = shape
        let n = batch * length, c = config.width
        let g = gradients.pointer
        let attention = attentionShape
        let dResidual = a.dResidual.pointer, dNorm = a.dNorm.pointer

        // The head's backward already ran, chunk by chunk, in the training forward pass (dNorm holds its result).
        dResidual.update(repeating: 0, count: n * c)
        normalizeBackward(dResidual, dNorm, a.residuals[config.layers].pointer, a.finalMean.pointer,
                          a.finalRstd.pointer, finalNorm, rows: n)
        gradientsReady?(finalNormSpan)
        for (l, block) in blocks.enumerated().reversed() {
            let s = a.blocks[l]
            projectBackward(a.dActivated.pointer, dResidual, s.activated.pointer, block.down, rows: n)
            profiled(.activation, .backward, bytes: 16 * Double(n * config.hiddenWidth)) {
                switch config.architecture {
                case .gpt2:
                    GELU.backward(dx: a.dHidden.pointer, dOut: a.dActivated.pointer, x: s.hidden.pointer,
                                  count: n * config.hiddenWidth)
                case .llama:
                    SwiGLU.backward(dGateUp: a.dHidden.pointer, dOut: a.dActivated.pointer, gateUp: s.hidden.pointer,
                                    rows: n, width: config.hiddenWidth)
                }
            }
            projectBackward(dNorm, a.dHidden.pointer, s.norm2.pointer, block.up, rows: n)
            normalizeBackward(dResidual, dNorm, s.mid.pointer, s.mean2.pointer, s.rstd2.pointer, block.norm2, rows: n)
            projectBackward(a.dAttention.pointer, dResidual, s.attention.pointer, block.projection, rows: n)
            profiled(.attention, .backward, flops: attentionFlops(.backward)) {
                attention.backward(dQKV: a.dQKV.pointer, dOut: a.dAttention.pointer, out: s.attention.pointer,
                                   lse: s.lse.pointer, qkv: s.qkv.pointer, scratch: a.attentionScratch.pointer)
                rope?.apply(a.dQKV.pointer, batch: batch, length: length, stride: attention.rowStride,
                            heads: config.heads + config.kvHeads, inverse: true)
            }
            projectBackward(dNorm, a.dQKV.pointer, s.norm1.pointer, block.qkv, rows: n)
            normalizeBackward(dResidual, dNorm, a.residuals[l].pointer, s.mean1.pointer, s.rstd1.pointer,
                              block.norm1, rows: n)
            gradientsReady?(block.span)
        }
        profiled(.embedding, .backward, bytes: 12 * Double(n * c)) {
            Embedding.backward(dTable: g + tokenEmbedding, dPositions: positionEmbedding.map { g + $0 }, dOut: dResidual,
                               tokens: a.inputs.baseAddress!, rows: n, length: length, columns: c)
        }
        gradientsReady?(embeddingSpan)
    }

    // MARK: - Layers shared by both architectures

    /// Runs `body`, timed into `profiler` when one is set.
    @inline(__always)
    private func profiled(_ kind: Profiler.Kind, _ direction: Profiler.Direction, flops: Double = 0, bytes: Double = 0,
                          _ body: () -> Void) {
        if let profiler { profiler.measure(kind, direction, flops: flops, bytes: bytes, body) } else { body() }
    }

    /// Multiply-adds of causal attention for one layer: Q·Kᵀ and P·V over the lower triangle forward
    /// (2·B·H·T²·d FLOPs); backward recomputes P and runs four products (5·B·H·T²·d).
    private func attentionFlops(_ direction: Profiler.Direction) -> Double {
        let base = Double(shape.batch * config.heads * shape.length * shape.length * config.headDim)
        return direction == .forward ? 2 * base : 5 * base
    }

    private var attentionShape: CausalAttention {
        CausalAttention(batch: shape.batch, length: shape.length, heads: config.heads, kvHeads: config.kvHeads,
                        headDim: config.headDim, precision: matrixPrecision)
    }

    /// The output projection to the vocabulary: logits = x · Wᵀ with W: [V, C] (GPT-2's tied `wte` too).
    private var headShape: LinearShape {
        LinearShape(inFeatures: config.width, outFeatures: config.vocabSize, layout: .outputMajor)
    }

    private func normalize(
        _ out: UnsafeMutablePointer<Float>, _ mean: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>,
        _ x: UnsafePointer<Float>, _ norm: Norm, rows: Int
    ) {
        profiled(.norm, .forward, bytes: 8 * Double(rows * config.width)) {
            normalizeUnprofiled(out, mean, rstd, x, norm, rows: rows)
        }
    }

    private func normalizeUnprofiled(
        _ out: UnsafeMutablePointer<Float>, _ mean: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>,
        _ x: UnsafePointer<Float>, _ norm: Norm, rows: Int
    ) {
        let p = parameters.pointer
        if let bias = norm.bias {
            LayerNorm.forward(out, mean: mean, rstd: rstd, x, weight: p + norm.weight, bias: p + bias, rows: rows,
                              columns: config.width, epsilon: config.normEpsilon)
        } else {
            RMSNorm.forward(out, rstd: rstd, x, weight: p + norm.weight, rows: rows, columns: config.width,
                            epsilon: config.normEpsilon)
        }
    }

    /// Adds the normalisation's input gradient into dx and its parameter gradients into `gradients`.
    private func normalizeBackward(
        _ dx: UnsafeMutablePointer<Float>, _ dOut: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
        _ mean: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>, _ norm: Norm, rows: Int
    ) {
        profiled(.norm, .backward, bytes: 16 * Double(rows * config.width)) {
            normalizeBackwardUnprofiled(dx, dOut, x, mean, rstd, norm, rows: rows)
        }
    }

    private func normalizeBackwardUnprofiled(
        _ dx: UnsafeMutablePointer<Float>, _ dOut: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
        _ mean: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>, _ norm: Norm, rows: Int
    ) {
        let p = parameters.pointer, g = gradients.pointer
        if let bias = norm.bias {
            LayerNorm.backward(dx: dx, dWeight: g + norm.weight, dBias: g + bias, dOut: dOut, x: x,
                               weight: p + norm.weight, mean: mean, rstd: rstd, rows: rows, columns: config.width)
        } else {
            RMSNorm.backward(dx: dx, dWeight: g + norm.weight, dOut: dOut, x: x, weight: p + norm.weight, rstd: rstd,
                             rows: rows, columns: config.width)
        }
    }

    private func project(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, _ layer: Projection, rows: Int) {
        let p = parameters.pointer
        profiled(.matmul, .forward, flops: 2 * Double(rows * layer.shape.inFeatures * layer.shape.outFeatures)) {
            layer.shape.forward(out, input, weight: p + layer.weight, bias: layer.bias.map { p + $0 }, rows: rows,
                                precision: matrixPrecision)
        }
    }

    /// Overwrites dInput with the layer's input gradient; adds its parameter gradients into `gradients`.
    private func projectBackward(
        _ dInput: UnsafeMutablePointer<Float>, _ dOut: UnsafePointer<Float>, _ input: UnsafePointer<Float>,
        _ layer: Projection, rows: Int
    ) {
        let p = parameters.pointer, g = gradients.pointer
        profiled(.matmul, .backward, flops: 4 * Double(rows * layer.shape.inFeatures * layer.shape.outFeatures)) {
            layer.shape.backward(dInput: dInput, accumulateInput: false, dWeight: g + layer.weight,
                                 dBias: layer.bias.map { g + $0 }, dOut: dOut, input: input, weight: p + layer.weight,
                                 rows: rows, precision: matrixPrecision)
        }
    }
}

import KeelCore
import KeelKernels

/// The final norm, the output projection to the vocabulary (logits = x · Wᵀ, W: [V, C]; GPT-2's W is the
/// token table) and the cross-entropy loss.
///
/// The projection and the loss run in chunks of rows so the N × V logits never exist at once. In a training
/// pass each chunk's ∂loss/∂logits goes straight into the projection's backward: its input gradient lands in
/// dNorm for `backward`, its weight gradient in the gradient buffer.
///
/// Under tensor parallelism the projection is vocab-parallel: each rank computes the logits of its slice of
/// the vocabulary, the loss combines the slices (`VocabParallelCrossEntropy`), and the projection's partial
/// input gradients are summed over the group (under sequence parallelism, the final norm runs on this rank's
/// rows of the stream, its output is all-gathered, and the input gradients are reduce-scattered).
struct OutputHead {
    private let norm: NormParameters
    /// The projection's weight: the head's own output tensor, or the tied token table.
    private let weight: Int
    /// The final norm's span, and the untied projection's (nil when tied: the embedding's span covers it).
    let normSpan: Range<Int>
    let weightSpan: Range<Int>?
    /// The spans of the parameters the training forward pass reads (the norm, the projection's weight wherever
    /// it lies) and the backward pass reads (the norm).
    let forwardSpans: [Range<Int>]
    var backwardSpans: [Range<Int>] { [normSpan] }

    /// The head of `table`, whose output weight is its own tensor, or else the token table at `tokenTable`.
    init(_ table: ParameterTable, tiedTo tokenTable: Int?) {
        norm = NormParameters(table, .head, weight: .finalNorm, bias: .finalNormBias)
        let output = table.entries.first { $0.part == .head && $0.slot == .output }
        guard let offset = output?.offset ?? tokenTable else { preconditionFailure("the head has no output weight") }
        weight = offset
        weightSpan = output?.range
        let norms = table.entries.filter { $0.part == .head && ($0.slot == .finalNorm || $0.slot == .finalNormBias) }
        normSpan = norms.first!.offset..<norms.last!.range.upperBound
        forwardSpans = [normSpan, output?.range ?? table.entries.first { $0.offset == offset }!.range]
    }

    private func shape(_ context: PartContext) -> LinearShape {
        LinearShape(inFeatures: context.config.width, outFeatures: context.shape.vocabulary.count, layout: .outputMajor)
    }

    /// The final norm of the last block's output x (the stream's rows) into the arena, for all N rows.
    func normalize(_ x: UnsafePointer<Float>, _ a: ActivationArena, _ context: PartContext) {
        context.normalize(a.finalNorm.pointer, a.finalMean.pointer, a.finalRstd.pointer, x, norm)
    }

    /// All N × V logits of the normalised rows (inference: no loss, no gradients).
    func logits(into logits: UnsafeMutablePointer<Float>, _ a: ActivationArena, _ context: PartContext) {
        let config = context.config, n = context.rows
        precondition(context.tensor == nil, "all logits of a tensor-parallel head are not gathered (sampling runs on one process)")
        context.profiled(.matmul, .forward, flops: 2 * Double(n * config.width * config.vocabSize)) {
            shape(context).forward(logits, a.finalNorm.pointer, weight: context.parameters + weight, bias: nil, rows: n,
                                  precision: context.precision)
        }
    }

    /// Per-row losses into `a.losses`; with `lossScale`, also the projection's gradients (input gradient into
    /// `a.dNorm`, weight gradient added into the gradient buffer) for a loss of `lossScale · mean`, the mean over
    /// the rows whose target is not `CrossEntropy.ignored`. Returns how many rows those are.
    /// `packs` are the bf16 caches: the weight packed once for all chunks, and ∂loss/∂logitsᵀ packed chunk by
    /// chunk for one weight-gradient product over all rows.
    /// With `rowWeights`, the gradients are those of `lossScale · Σ rowWeights[r] · loss[r]` instead (no mean).
    /// With `temperature`, the losses are of the softmax of logits / temperature (`CrossEntropy.forward`).
    @discardableResult
    func loss(
        targets: UnsafePointer<Int32>, lossScale: Float?, rowWeights: UnsafePointer<Float>? = nil, temperature: Float = 1,
        _ a: ActivationArena,
        packs: (weight: PackedLinearWeight, gradient: PackedLeftOperand), _ context: PartContext
    ) -> Int {
        let config = context.config, n = context.rows, c = config.width, v = context.shape.vocabulary.count
        let counted = CrossEntropy.counted(targets, count: n)
        let p = context.parameters, g = context.gradients, headShape = shape(context)
        // In bf16 the weight is rounded and packed once for all chunks, not once per chunk and product.
        let packedHead = context.precision == .bfloat16 ? packs.weight : nil
        if let packedHead { headShape.pack(p + weight, into: packedHead) }
        // And its weight gradient is one product over all rows after the loop: each chunk packs its ∂loss/∂logitsᵀ
        // as a slice of that product's K, where a product per chunk would read and write the whole V × C gradient.
        let headGradient = packedHead != nil && lossScale != nil ? packs.gradient : nil
        headGradient?.reserve(m: v, k: n)
        var start = 0
        while start < n {
            let rows = min(a.headRows, n - start)
            let x = a.finalNorm.pointer + start * c
            context.profiled(.matmul, .forward, flops: 2 * Double(rows * c * v)) {
                headShape.forward(a.headLogits.pointer, x, weight: p + weight, bias: nil, rows: rows,
                                  precision: context.precision, packed: packedHead)
            }
            context.profiled(.loss, .forward, bytes: 12 * Double(rows * v)) {
                let scale = rowWeights != nil ? lossScale : lossScale.map { counted > 0 ? $0 / Float(counted) : 0 }
                let rowScales = rowWeights.map { $0 + start }
                if let tensor = context.tensor {
                    tensor.run {
                        try VocabParallelCrossEntropy.forward(
                            losses: a.losses.pointer + start, logits: a.headLogits.pointer, targets: targets + start, rows: rows,
                            slice: context.shape.vocabulary, gradientScale: scale, reductions: tensor.lossReductions,
                            rowScales: rowScales, temperature: temperature)
                    }
                } else {
                    CrossEntropy.forward(losses: a.losses.pointer + start, logits: a.headLogits.pointer, targets: targets + start,
                                         rows: rows, vocab: v, gradientScale: scale, rowScales: rowScales,
                                         temperature: temperature)
                }
            }
            if let headGradient {
                context.profiled(.matmul, .backward, flops: 2 * Double(rows * c * v)) {
                    headGradient.pack(.transposed, columns: rows, offset: start, a.headLogits.pointer, lda: v)
                    // The blas engine's packing is the chunk rounded: the input gradient reads it instead of rounding
                    // the chunk again.
                    let rounded = headGradient.roundedSlice(offset: start)
                    headShape.inputGradient(a.dNorm.pointer + start * c, accumulate: false,
                                            dOut: rounded ?? UnsafePointer(a.headLogits.pointer), dOutIsRounded: rounded != nil,
                                            weight: p + weight, rows: rows, packed: packedHead)
                }
            } else if lossScale != nil {
                context.profiled(.matmul, .backward, flops: 4 * Double(rows * c * v)) {
                    headShape.backward(dInput: a.dNorm.pointer + start * c, accumulateInput: false, dWeight: g + weight,
                                       dBias: nil, dOut: a.headLogits.pointer, input: x, weight: p + weight, rows: rows,
                                       precision: context.precision)
                }
            }
            start += rows
        }
        if let headGradient {  // dW[V, C] += (∂loss/∂logits)ᵀ · x, over all N rows at once
            context.profiled(.matmul, .backward, flops: 2 * Double(n * c * v)) {
                gemm(packed: headGradient, .none, n: c, a.finalNorm.pointer, beta: 1, g + weight)
            }
        }
        return counted
    }

    /// The final norm's backward: ∂loss/∂x into dResidual (zeroed first) from the projection's input
    /// gradient in `a.dNorm` (summed over the tensor group first); x is the last block's output.
    func backward(_ dResidual: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>, _ a: ActivationArena,
                  _ context: PartContext) {
        let dNorm = context.summedInputGradient(a.dNorm.pointer, a, label: "head input gradient")
        dResidual.update(repeating: 0, count: context.streamRows * context.config.width)
        context.normalizeBackward(dResidual, dNorm, x, a.finalMean.pointer, a.finalRstd.pointer, norm)
    }
}

import KeelCore
import KeelKernels

/// One transformer block, pre-norm: x + attention(norm₁(x)) = mid, mid + MLP(norm₂(mid)) = out.
/// GPT-2: LayerNorm, fused QKV, GELU-tanh; Llama: RMSNorm, RoPE on q and k, SwiGLU over gate | up.
/// Forward saves what backward needs in `saved`; backward adds this block's parameter gradients into the
/// gradient buffer and turns the gradient of its output into the gradient of its input, in place.
///
/// Under tensor parallelism (Megatron-LM) the same code runs on each rank's share of the heads and of the MLP
/// width: q | k | v and the MLP's up projection are column-parallel (each rank computes its heads' and its
/// hidden units' outputs from the whole input), the attention output and down projections row-parallel (each
/// rank's partial output is summed over the tensor group, one all-reduce each); in the backward pass the
/// input gradients of the column-parallel projections are summed instead. With sequence parallelism the
/// residual stream and the norms hold only this rank's rows: the norms' outputs are all-gathered before the
/// column-parallel projections and the row-parallel sums are reduce-scatters (`PartContext`), and in the backward
/// pass the other way round.
struct Block {
    /// The block's span of the flat buffers (reported to data parallelism when its gradients are final).
    let span: Range<Int>
    private let attentionNorm, mlpNorm: NormParameters
    private let qkv, attentionOutput, up, down: ProjectionParameters

    init(_ table: ParameterTable, layer: Int, config: ModelConfig, shape: LocalShape) {
        let part = ModelPart.block(layer), layout = config.architecture.family.weightLayout
        let c = config.width, d = shape.headDim, f = shape.hiddenWidth
        func projection(_ weight: TensorSlot, _ bias: TensorSlot, _ input: Int, _ output: Int,
                        rowParallel: Bool = false, readsRoundedOperand: Bool = true) -> ProjectionParameters {
            ProjectionParameters(table, part, weight: weight, bias: bias,
                                 shape: LinearShape(inFeatures: input, outFeatures: output, layout: layout),
                                 summedAfterwards: rowParallel, readsRoundedOperand: readsRoundedOperand)
        }
        span = table.range(of: part)
        attentionNorm = NormParameters(table, part, weight: .attentionNorm, bias: .attentionNormBias)
        mlpNorm = NormParameters(table, part, weight: .mlpNorm, bias: .mlpNormBias)
        qkv = projection(.qkv, .qkvBias, c, shape.qkvWidth)
        attentionOutput = projection(.attentionOutput, .attentionOutputBias, shape.heads * d, c, rowParallel: true,
                                     readsRoundedOperand: false)
        // Llama's gate and up projections are one product of twice the width.
        up = projection(.up, .upBias, c, config.architecture == .llama ? 2 * f : f)
        down = projection(.down, .downBias, f, c, rowParallel: true)
    }

    /// x → out, both the residual stream ([streamRows, C]); `a` holds the scratch buffers.
    func forward(
        _ x: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>, saved s: ActivationArena.Block,
        work a: ActivationArena, rope: RotaryEmbedding?, _ context: PartContext
    ) {
        let config = context.config, n = context.rows, c = config.width, attention = context.attention
        let shape = context.shape, f = shape.hiddenWidth, stream = context.streamRows
        // The norms and activation functions, whose outputs only projections read, write them rounded where those read
        // rounded operands as they are.
        let rounding = context.precision.readsRoundedOperands
        context.normalize(s.norm1.pointer, s.mean1.pointer, s.rstd1.pointer, x, attentionNorm, rounding: rounding)
        context.project(s.qkv.pointer, s.norm1.pointer, qkv)
        context.profiled(.attention, .forward, flops: context.attentionFlops(.forward)) {
            rope?.apply(s.qkv.pointer, batch: context.batch, length: context.length, stride: attention.rowStride,
                        heads: shape.heads + shape.kvHeads, documents: context.documents)
            attention.forward(s.attention.pointer, lse: s.lse.pointer, qkv: s.qkv.pointer, scratch: a.attentionScratch.pointer,
                              documents: context.documents)
        }
        context.project(context.partialOutput(s.mid.pointer, a), s.attention.pointer, attentionOutput)
        context.sumPartialOutput(s.mid.pointer, a, label: "attention output")
        context.profiled(.residual, .forward, bytes: 12 * Double(stream * c)) {
            addInPlace(x, into: s.mid.pointer, count: stream * c)
        }
        context.normalize(s.norm2.pointer, s.mean2.pointer, s.rstd2.pointer, s.mid.pointer, mlpNorm, rounding: rounding)
        context.project(s.hidden.pointer, s.norm2.pointer, up)
        context.profiled(.activation, .forward, bytes: 12 * Double(n * f)) {
            switch config.architecture {
            case .gpt2: GELU.forward(s.activated.pointer, s.hidden.pointer, count: n * f, roundingOutput: rounding)
            case .llama: SwiGLU.forward(s.activated.pointer, s.hidden.pointer, rows: n, width: f, roundingOutput: rounding)
            }
        }
        context.project(context.partialOutput(out, a), s.activated.pointer, down)
        context.sumPartialOutput(out, a, label: "MLP output")
        context.profiled(.residual, .forward, bytes: 12 * Double(stream * c)) {
            addInPlace(s.mid.pointer, into: out, count: stream * c)
        }
    }

    /// dResidual holds ∂loss/∂out on entry and ∂loss/∂x on return (the stream's rows); `x` is the input of the
    /// forward pass.
    /// Parameter gradients are added into the gradient buffer, except, with `deferred`, the projections'
    /// weight gradients: their output gradients are kept there for `backwardWeight` (a zero-bubble schedule's
    /// B and W halves).
    func backward(
        _ dResidual: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>, saved s: ActivationArena.Block,
        work a: ActivationArena, rope: RotaryEmbedding?, deferred: ActivationArena.Deferred.Block? = nil,
        _ context: PartContext
    ) {
        let config = context.config, n = context.rows, attention = context.attention
        let shape = context.shape, f = shape.hiddenWidth
        let dNorm = a.dNorm.pointer
        let dOutput = context.gatheredGradient(dResidual, a, label: "MLP output gradient")
        context.projectBackward(a.dActivated.pointer, dOutput, s.activated.pointer, down, deferred: deferred?.down.pointer)
        context.profiled(.activation, .backward, bytes: 16 * Double(n * f)) {
            switch config.architecture {
            case .gpt2:
                GELU.backward(dx: a.dHidden.pointer, dOut: a.dActivated.pointer, x: s.hidden.pointer, count: n * f)
            case .llama:
                SwiGLU.backward(dGateUp: a.dHidden.pointer, dOut: a.dActivated.pointer, gateUp: s.hidden.pointer,
                                rows: n, width: f)
            }
        }
        context.projectBackward(dNorm, a.dHidden.pointer, s.norm2.pointer, up, deferred: deferred?.up.pointer)
        let dMLPInput = context.summedInputGradient(dNorm, a, label: "MLP input gradient")
        context.normalizeBackward(dResidual, dMLPInput, s.mid.pointer, s.mean2.pointer, s.rstd2.pointer, mlpNorm)
        let dMid = context.gatheredGradient(dResidual, a, label: "attention output gradient")
        context.projectBackward(a.dAttention.pointer, dMid, s.attention.pointer, attentionOutput,
                                deferred: deferred?.attentionOutput.pointer)
        context.profiled(.attention, .backward, flops: context.attentionFlops(.backward)) {
            attention.backward(dQKV: a.dQKV.pointer, dOut: a.dAttention.pointer, out: s.attention.pointer,
                               lse: s.lse.pointer, qkv: s.qkv.pointer, scratch: a.attentionScratch.pointer,
                               documents: context.documents)
            rope?.apply(a.dQKV.pointer, batch: context.batch, length: context.length, stride: attention.rowStride,
                        heads: shape.heads + shape.kvHeads, inverse: true, documents: context.documents)
        }
        context.projectBackward(dNorm, a.dQKV.pointer, s.norm1.pointer, qkv, deferred: deferred?.qkv.pointer)
        let dAttentionInput = context.summedInputGradient(dNorm, a, label: "attention input gradient")
        context.normalizeBackward(dResidual, dAttentionInput, x, s.mean1.pointer, s.rstd1.pointer, attentionNorm)
    }

    /// The projections' weight gradients held back by `backward(…, deferred:)`, from the saved forward inputs.
    func backwardWeight(saved s: ActivationArena.Block, deferred: ActivationArena.Deferred.Block, _ context: PartContext) {
        context.projectWeightGradient(deferred.down.pointer, s.activated.pointer, down)
        context.projectWeightGradient(deferred.up.pointer, s.norm2.pointer, up)
        context.projectWeightGradient(deferred.attentionOutput.pointer, s.attention.pointer, attentionOutput)
        context.projectWeightGradient(deferred.qkv.pointer, s.norm1.pointer, qkv)
    }
}

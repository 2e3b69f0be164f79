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

    private let embedding: InputEmbedding
    private let blocks: [Block]
    private let head: OutputHead
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

    /// Builds the model with freshly initialised parameters.
    public init(config: ModelConfig, seed: UInt64) throws {
        try config.validate()
        self.config = config
        table = ParameterTable(config: config)
        parameters = FloatBuffer(count: table.count)
        gradients = FloatBuffer(count: table.count)
        table.initialize(parameters, seed: seed)
        let table = self.table
        let embedding = InputEmbedding(table)
        self.embedding = embedding
        blocks = (0..<config.layers).map { Block(table, layer: $0, config: config) }
        head = OutputHead(table, tiedTo: embedding.tokenTable)
        rope = config.architecture == .llama
            ? RotaryEmbedding(headDim: config.headDim, maxLength: config.maxLength, theta: config.ropeTheta) : nil
    }

    /// The parts' view of the buffers and of the current batch.
    private var context: PartContext {
        PartContext(config: config, parameters: parameters.pointer, gradients: gradients.pointer, batch: shape.batch,
                    length: shape.length, precision: matrixPrecision, profiler: profiler)
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
        let n = batch * length
        if arena == nil || arena!.rows < n { arena = ActivationArena(config: config, rows: n) }
        let a = arena!
        shape = (batch, length)
        a.inputs.baseAddress!.update(from: inputs, count: n)
        let context = self.context

        embedding.forward(a.residuals[0].pointer, tokens: inputs, context)
        for (l, block) in blocks.enumerated() {
            block.forward(a.residuals[l].pointer, into: a.residuals[l + 1].pointer, saved: a.blocks[l],
                          scratch: a.attentionScratch.pointer, rope: rope, context)
        }
        head.normalize(a.residuals[config.layers].pointer, a, context)
        guard let targets else {
            head.logits(into: a.allLogits(vocabulary: config.vocabSize).pointer, a, context)
            return 0
        }
        a.targets.baseAddress!.update(from: targets, count: n)
        head.loss(targets: targets, lossScale: lossScale, a, packs: (headPack, headGradientPack), context)
        if lossScale != nil, let span = head.weightSpan { gradientsReady?(span) }
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
        let context = self.context
        let dResidual = a.dResidual.pointer
        // The projection's backward already ran, chunk by chunk, in the training forward pass (dNorm holds its result).
        head.backward(dResidual, input: a.residuals[config.layers].pointer, a, context)
        gradientsReady?(head.normSpan)
        for (l, block) in blocks.enumerated().reversed() {
            block.backward(dResidual, input: a.residuals[l].pointer, saved: a.blocks[l], work: a, rope: rope, context)
            gradientsReady?(block.span)
        }
        embedding.backward(dResidual, tokens: a.inputs.baseAddress!, context)
        gradientsReady?(embedding.span)
    }
}

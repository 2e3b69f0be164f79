import KeelComm
import KeelCore
import KeelKernels

/// A decoder-only transformer (GPT-2 or Llama) with explicit forward and backward passes over one flat
/// parameter buffer and one flat gradient buffer — the whole model, or one pipeline stage of it: the
/// embedding when its `layers` start at 0, blocks `layers`, and the head when they end at the last block.
///
/// Usage per micro-batch: `forward` with a `lossScale` computes the loss on the last stage (and, chunk by
/// chunk, the output head's gradients); `backward` then adds every other parameter's gradient into
/// `gradients` (callers zero it once per optimizer step, which is what makes gradient accumulation work).
/// Stages after the first take the previous stage's `output` as their input, stages before the last take
/// the next stage's `inputGradient` as their output's gradient.
public final class Transformer: @unchecked Sendable {
    public let config: ModelConfig
    /// The blocks this model holds (all of them unless it is a pipeline stage).
    public let layers: Range<Int>
    public let table: ParameterTable
    /// This model's parameters, laid out by `table`.
    public let parameters: FloatBuffer
    /// Their gradients, same layout as `parameters`.
    public let gradients: FloatBuffer

    /// The tensor-parallel group this model's parts run over, if any, and this rank's sizes in it.
    private let tensor: TensorGroup?
    /// The tensor ranks that share this rank's key/value heads (more ranks than kv heads), if any.
    private let kvGroup: (any Communicator)?
    private let shape: LocalShape
    private let embedding: InputEmbedding?
    private let blocks: [Block]
    private let head: OutputHead?
    private let rope: RotaryEmbedding?
    /// One set of saved activations per micro-batch in flight (a pipeline stage holds several between their
    /// forward and backward passes); slot 0 unless the caller says otherwise.
    private var arenas: [ActivationArena?] = [nil]
    /// When set, every kernel call is timed into it (`keel bench --profile`).
    public var profiler: Profiler?
    /// The operand format of every matrix product (projections, the head and attention's products);
    /// `.bfloat16` runs on `BFloat16Engine.selected`.
    public var matrixPrecision: MatrixPrecision = .float32
    /// The losses of a forward pass with targets (and their gradients) are those of the softmax of logits / T: the
    /// distribution a sampler at temperature T draws from, which GRPO's log-probabilities are of, as TRL's. 1: the
    /// model's own. Logits read without targets are the model's, whatever it is.
    public var lossTemperature: Float = 1
    private lazy var headPack = PackedLinearWeight()
    /// bf16 training: the head's ∂loss/∂logitsᵀ over all rows, packed chunk by chunk for its weight gradient.
    private lazy var headGradientPack = PackedLeftOperand()
    /// When set, called with each span of `gradients` as soon as a training pass has finished writing it
    /// (the untied output head at the end of `forward`, the rest during `backward`, last layer first), so
    /// data parallelism can start communicating while the backward pass continues.
    public var gradientsReady: ((Range<Int>) -> Void)?
    /// When set, each part's parameters are acquired from it just before the part reads them and released just
    /// after (ZeRO-3); nil: `parameters` always holds all of them.
    public var residency: (any ParameterResidency)?

    /// Builds the model, or the pipeline stage holding blocks `layers`, with freshly initialised parameters
    /// (each tensor equal to the same tensor of the whole model built with the same seed). With `tensor`, the
    /// model is this rank's share of a tensor-parallel group (Megatron-LM): its pieces of every split tensor
    /// (`TensorSplit`), cut from the whole model's, and passes that sum partial results over the group; with
    /// `sequenceParallel` as well, the residual stream and the norms hold only this rank's share of the token rows
    /// (every batch's B·T must then divide by the group's size), and the norms' gradients are partial sums that
    /// the caller adds up over the group (`partialGradients`). With more tensor ranks than key/value heads, each
    /// kv head is held by several ranks, whose gradients of it are partial too. With `initialized` false the parameters
    /// are left zero and untouched (ZeRO-3 initialises each rank's share with `table.initialize(_:seed:only:)`).
    public init(config: ModelConfig, seed: UInt64, layers: Range<Int>? = nil, tensor: (any Communicator)? = nil,
                sequenceParallel: Bool = false, initialized: Bool = true) throws {
        try config.validate()
        let layers = layers ?? 0..<config.layers
        guard !layers.isEmpty, layers.lowerBound >= 0, layers.upperBound <= config.layers else {
            throw KeelError("a stage's layers \(layers) must be a non-empty part of 0..<\(config.layers)")
        }
        let tensorRank = tensor.map { TensorRank(rank: $0.rank, size: $0.size) } ?? .whole
        guard config.heads % tensorRank.size == 0, ParameterTable.divides(config, by: tensorRank.size) else {
            throw KeelError("tensor parallelism: \(tensorRank.size) ranks must divide n_head (\(config.heads)) and d_ff (\(config.hiddenWidth)), and divide or be a multiple of n_kv_head (\(config.kvHeads))")
        }
        self.config = config
        self.layers = layers
        guard !sequenceParallel || tensorRank.size > 1 else {
            throw KeelError("sequence parallelism needs a tensor-parallel group of more than one rank")
        }
        self.tensor = tensor.flatMap { $0.size > 1 ? TensorGroup(communicator: $0, sequenceParallel: sequenceParallel) : nil }
        // The ranks sharing this rank's key/value heads, when there are more ranks than kv heads.
        let t = tensorRank.size, kv = config.kvHeads
        kvGroup = t > kv ? try tensor!.split(color: tensorRank.rank * kv / t, key: tensorRank.rank) : nil
        shape = LocalShape(config, tensor: tensorRank)
        let table = ParameterTable(config: config, layers: layers, tensor: tensorRank)
        self.table = table
        parameters = FloatBuffer(count: table.count)
        gradients = FloatBuffer(count: table.count)
        if initialized { table.initialize(parameters, seed: seed) }
        let embedding = layers.lowerBound == 0 ? InputEmbedding(table) : nil
        self.embedding = embedding
        blocks = layers.map { [shape] in Block(table, layer: $0, config: config, shape: shape) }
        head = layers.upperBound == config.layers ? OutputHead(table, tiedTo: embedding?.tokenTable) : nil
        rope = config.architecture == .llama
            ? RotaryEmbedding(headDim: config.headDim, maxLength: config.maxLength, theta: config.ropeTheta) : nil
    }

    /// Gradients this rank computes only part of, with the group over which the parts add up: under sequence
    /// parallelism the norms' (each tensor rank saw only its rows), and key/value heads shared by several tensor
    /// ranks (each rank's query heads contribute their part). After a step's passes each must be summed over its
    /// group (which commutes with the data-parallel average). Empty otherwise.
    public var partialGradients: [(spans: [Range<Int>], group: any Communicator)] {
        var partial: [(spans: [Range<Int>], group: any Communicator)] = []
        if let tensor, tensor.sequenceParallel {
            let norms: Set<TensorSlot> = [.attentionNorm, .attentionNormBias, .mlpNorm, .mlpNormBias, .finalNorm, .finalNormBias]
            partial.append((table.entries.filter { norms.contains($0.slot) }.map(\.range), tensor.communicator))
        }
        if let kvGroup { partial.append((sharedPieces.map(\.range), kvGroup)) }
        return partial
    }

    /// The spans of `gradients` that another rank of the tensor group holds too and counts (in the gradient norm,
    /// say): every whole (replicated) tensor on tensor ranks but the first, and shared key/value heads on the
    /// ranks sharing them but the first.
    public var duplicateSpans: [Range<Int>] {
        let replicated = table.tensor.rank == 0 ? [] : table.entries.filter { $0.split == .replicated }
        let shared = (kvGroup?.rank ?? 0) == 0 ? [] : sharedPieces
        return (replicated + shared).map(\.range)
    }

    /// Split tensors whose piece this rank shares with other tensor ranks (key/value heads).
    private var sharedPieces: [ParameterEntry] {
        table.entries.filter { $0.split != .replicated && $0.tensorRank.size < table.tensor.size }
    }

    /// Floats of one micro-batch's activations (or their gradient) between pipeline stages: the residual stream
    /// of batch · length tokens, or under sequence parallelism this tensor rank's rows of it.
    public func activationCount(batch: Int, length: Int) -> Int {
        batch * length / (tensor?.sequenceParallel == true ? tensor!.communicator.size : 1) * config.width
    }

    /// Whether this model starts from token ids (it holds the embedding).
    public var isFirstStage: Bool { embedding != nil }
    /// Whether this model ends in the loss (it holds the head).
    public var isLastStage: Bool { head != nil }

    /// The parts' view of the buffers and of the batch held in `arena`.
    private func context(_ arena: ActivationArena) -> PartContext {
        PartContext(config: config, shape: shape, tensor: tensor, parameters: parameters.pointer, gradients: gradients.pointer,
                    batch: arena.batch, length: arena.length,
                    documents: arena.hasDocuments ? UnsafePointer(arena.documents.baseAddress!) : nil,
                    precision: matrixPrecision, profiler: profiler)
    }

    /// Runs the model on `inputs` ([batch, length] token ids, each in `0..<vocabSize`); the first stage only.
    ///
    /// With `targets`, returns the mean cross-entropy over the positions whose target is not
    /// `CrossEntropy.ignored` (all of them, for pre-training); with `lossScale` as well, prepares `backward()` to add
    /// the gradient of `lossScale · mean loss`. Without targets returns 0 and
    /// leaves the logits readable through `logits(row:)`. On a stage before the last, `targets` and
    /// `lossScale` are ignored, it returns 0 and its result is `output`.
    /// With `documents` ([batch, length]: each token's document start in its sequence), the sequences pack
    /// documents: attention stays within each, and positions count from its start, as if each were alone.
    /// With `lossWeights` ([batch, length]) as well, `backward()` adds the gradient of
    /// `lossScale · Σ lossWeights[r] · loss[r]` instead of the mean's (each position's cross-entropy weighed: a
    /// sequence's log-probability in preference optimisation or a policy gradient); `rowLosses` gives the losses.
    @discardableResult
    public func forward(
        inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>?, batch: Int, length: Int, lossScale: Float? = nil,
        slot: Int = 0, documents: UnsafePointer<Int32>? = nil, lossWeights: UnsafePointer<Float>? = nil
    ) -> Float {
        guard let embedding else { preconditionFailure("a stage after the first takes activations, not tokens") }
        let a = prepare(batch: batch, length: length, slot: slot, documents: documents)
        a.inputs.baseAddress!.update(from: inputs, count: batch * length)
        using([embedding.span], next: blocks.first.map { [$0.span] } ?? head?.forwardSpans) {
            embedding.forward(a.residuals[0].pointer, tokens: inputs, a, context(a))
        }
        return run(a, targets: targets, lossScale: lossScale, lossWeights: lossWeights)
    }

    /// Each position's cross-entropy, −log p(target), from the last forward pass with targets in `slot` (0 where the
    /// target was ignored): a sequence's log-probability is minus their sum over its completion.
    public func rowLosses(slot: Int = 0) -> UnsafeBufferPointer<Float> {
        let a = arenas[slot]!
        return UnsafeBufferPointer(start: a.losses.pointer, count: a.batch * a.length)
    }

    /// Runs the whole model on `inputs` up to its final norm, without the output projection, and returns those
    /// features ([batch · length, width]): what a reward model's scalar head reads. `backward(featureGradient:)`
    /// then adds the gradient of a loss of them. One process's whole model only (no tensor parallelism).
    public func features(inputs: UnsafePointer<Int32>, batch: Int, length: Int, slot: Int = 0,
                         documents: UnsafePointer<Int32>? = nil) -> UnsafePointer<Float> {
        guard let embedding, head != nil, tensor == nil else {
            preconditionFailure("features come from one process's whole model")
        }
        let a = prepare(batch: batch, length: length, slot: slot, documents: documents)
        a.inputs.baseAddress!.update(from: inputs, count: batch * length)
        using([embedding.span], next: blocks.first.map { [$0.span] } ?? head?.forwardSpans) {
            embedding.forward(a.residuals[0].pointer, tokens: inputs, a, context(a))
        }
        run(a, targets: nil, lossScale: nil, featuresOnly: true)
        return UnsafePointer(a.finalNorm.pointer)
    }

    /// Adds into `gradients` the gradient of a loss whose gradient with respect to the last `features` pass in `slot`
    /// is `featureGradient` ([batch · length, width]); the output projection gets none.
    public func backward(featureGradient: UnsafePointer<Float>, slot: Int = 0) {
        guard let a = arenas[slot] else { preconditionFailure("backward before features") }
        a.dNorm.pointer.update(from: featureGradient, count: a.batch * a.length * config.width)
        backwardPass(slot: slot, outputGradient: nil, deferringWeights: false)
    }

    /// Runs a stage after the first on the previous stage's `output` (`activationCount` floats); otherwise as
    /// `forward(inputs:…)`. `slot` chooses the saved activations used (one per micro-batch in flight).
    @discardableResult
    public func forward(
        activations: UnsafePointer<Float>, targets: UnsafePointer<Int32>?, batch: Int, length: Int, lossScale: Float? = nil,
        slot: Int = 0, documents: UnsafePointer<Int32>? = nil
    ) -> Float {
        precondition(!isFirstStage, "the first stage takes token ids")
        let a = prepare(batch: batch, length: length, slot: slot, documents: documents)
        a.residuals[0].pointer.update(from: activations, count: activationCount(batch: batch, length: length))
        return run(a, targets: targets, lossScale: lossScale)
    }

    /// The result of the forward pass in `slot` on a stage before the last (`activationCount` floats).
    public func output(slot: Int = 0) -> UnsafePointer<Float> { UnsafePointer(arenas[slot]!.residuals[blocks.count].pointer) }

    private func prepare(batch: Int, length: Int, slot: Int, documents: UnsafePointer<Int32>?) -> ActivationArena {
        precondition(length <= config.maxLength, "sequence longer than max_seq_len")
        let n = batch * length, divisor = tensor?.sequenceParallel == true ? tensor!.communicator.size : 1
        precondition(n % divisor == 0, "sequence parallelism over \(divisor) ranks needs batch · length (\(n)) divisible by it")
        while arenas.count <= slot { arenas.append(nil) }
        // Attention's scratch depends on the products' precision too (bf16 on the blas engine rounds whole heads).
        let scratch = CausalAttention.scratchCount(maxLength: config.maxLength, headDim: shape.headDim, precision: matrixPrecision)
        if arenas[slot] == nil || arenas[slot]!.rows < n || arenas[slot]!.attentionScratch.count < scratch {
            arenas[slot] = ActivationArena(config: config, shape: shape, layers: blocks.count, rows: n,
                                           attentionScratchCount: scratch, streamDivisor: divisor)
        }
        arenas[slot]!.batch = batch
        arenas[slot]!.length = length
        arenas[slot]!.hasDocuments = documents != nil
        if let documents {
            // Each start lies at or before its token, within the sequence, and never moves back: attention and the
            // position tables read by it.
            for row in 0..<n {
                let start = Int(documents[row]), t = row % length
                precondition(start >= 0 && start <= t && (t == 0 || start >= Int(documents[row - 1])),
                             "document start \(start) of token \(t) in sequence \(row / length) is not a start of an earlier or the same token")
            }
            arenas[slot]!.documents.baseAddress!.update(from: documents, count: n)
        }
        return arenas[slot]!
    }

    /// The blocks, then on the last stage the head and the loss (with `featuresOnly`, the final norm alone).
    @discardableResult
    private func run(_ a: ActivationArena, targets: UnsafePointer<Int32>?, lossScale: Float?,
                     lossWeights: UnsafePointer<Float>? = nil, featuresOnly: Bool = false) -> Float {
        let context = context(a), n = context.rows
        for (i, block) in blocks.enumerated() {
            using([block.span], next: i + 1 < blocks.count ? [blocks[i + 1].span] : head?.forwardSpans) {
                block.forward(a.residuals[i].pointer, into: a.residuals[i + 1].pointer, saved: a.blocks[i],
                              work: a, rope: rope, context)
            }
        }
        guard let head else { return 0 }
        residency?.acquire(head.forwardSpans, upcoming: nil)
        defer { residency?.release(head.forwardSpans) }
        head.normalize(a.residuals[blocks.count].pointer, a, context)
        if featuresOnly { return 0 }
        guard let targets else {
            head.logits(into: a.allLogits(vocabulary: config.vocabSize).pointer, a, context)
            return 0
        }
        a.targets.baseAddress!.update(from: targets, count: n)
        let counted = head.loss(targets: targets, lossScale: lossScale, rowWeights: lossWeights, temperature: lossTemperature, a,
                                packs: (headPack, headGradientPack), context)
        if lossScale != nil, let span = head.weightSpan { gradientsReady?(span) }
        var total = 0.0
        for i in 0..<n { total += Double(a.losses.pointer[i]) }
        return counted > 0 ? Float(total / Double(counted)) : 0
    }

    /// The logits of one row (b·length + t) of the last forward pass without targets.
    public func logits(row: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: arenas[0]!.allLogits(vocabulary: config.vocabSize).pointer + row * config.vocabSize,
                            count: config.vocabSize)
    }

    /// Adds the rest of the gradient of the training forward pass in `slot` into `gradients` (the output
    /// head's share was added during that pass); the last stage only.
    public func backward(slot: Int = 0) {
        backwardPass(slot: slot, outputGradient: nil, deferringWeights: false)
    }

    /// A stage before the last: adds the gradients of the forward pass in `slot` into `gradients`, given the
    /// gradient of its `output` (the next stage's `inputGradient`).
    public func backward(outputGradient: UnsafePointer<Float>, slot: Int = 0) {
        backwardPass(slot: slot, outputGradient: outputGradient, deferringWeights: false)
    }

    /// The first half of a split backward pass (a zero-bubble schedule's B): as `backward`, from the loss on
    /// the last stage or from `outputGradient` on the others, but the projections' and the embedding's weight
    /// gradients wait for `backwardWeight(slot:)`; `inputGradient(slot:)` is ready when it returns.
    public func backwardInput(outputGradient: UnsafePointer<Float>? = nil, slot: Int = 0) {
        backwardPass(slot: slot, outputGradient: outputGradient, deferringWeights: true)
    }

    /// The second half of a split backward pass (W): the weight gradients `backwardInput(slot:)` held back.
    public func backwardWeight(slot: Int = 0) {
        guard let a = arenas[slot], let deferred = a.deferred else { preconditionFailure("backwardWeight() before backwardInput()") }
        let context = context(a)
        for (i, block) in blocks.enumerated().reversed() {
            block.backwardWeight(saved: a.blocks[i], deferred: deferred.blocks[i], context)
            gradientsReady?(block.span)
        }
        embeddingBackward(a, dOut: deferred.embedding.pointer)
    }

    /// After a backward pass in `slot` on a stage after the first: the gradient of its input, for the previous
    /// stage.
    public func inputGradient(slot: Int = 0) -> UnsafePointer<Float> { UnsafePointer(arenas[slot]!.dResidual.pointer) }

    private func backwardPass(slot: Int, outputGradient: UnsafePointer<Float>?, deferringWeights: Bool) {
        guard let a = arenas[slot] else { preconditionFailure("backward before forward") }
        let context = context(a)
        let dResidual = a.dResidual.pointer, stream = context.streamRows * config.width
        if let head {
            precondition(outputGradient == nil, "the last stage's backward starts from its loss")
            // The projection's backward already ran, chunk by chunk, in the training forward pass (dNorm holds it).
            using(head.backwardSpans, next: blocks.last.map { [$0.span] }) {
                head.backward(dResidual, input: a.residuals[blocks.count].pointer, a, context)
            }
            gradientsReady?(head.normSpan)
        } else {
            guard let outputGradient else { preconditionFailure("a stage before the last needs its output's gradient") }
            dResidual.update(from: outputGradient, count: stream)
        }
        if deferringWeights && a.deferred == nil {
            a.deferred = ActivationArena.Deferred(config: config, shape: shape, layers: blocks.count, rows: a.rows)
        }
        let deferred = deferringWeights ? a.deferred : nil
        for (i, block) in blocks.enumerated().reversed() {
            using([block.span], next: i > 0 ? [blocks[i - 1].span] : nil) {
                block.backward(dResidual, input: a.residuals[i].pointer, saved: a.blocks[i], work: a, rope: rope,
                               deferred: deferred?.blocks[i], context)
            }
            if deferred == nil { gradientsReady?(block.span) }
        }
        if let deferred {
            if isFirstStage { deferred.embedding.pointer.update(from: dResidual, count: stream) }
        } else {
            embeddingBackward(a, dOut: dResidual)
        }
    }

    /// Runs a part's `body` with its parameter `spans` present (`residency`), naming the `next` part's.
    private func using(_ spans: [Range<Int>], next: [Range<Int>]?, _ body: () -> Void) {
        guard let residency else { return body() }
        residency.acquire(spans, upcoming: next)
        body()
        residency.release(spans)
    }

    /// The embedding's backward pass reads no parameters (it scatters the gradient into the token table), nor do
    /// the weight gradients of a split backward pass, so neither acquires any.
    private func embeddingBackward(_ a: ActivationArena, dOut: UnsafeMutablePointer<Float>) {
        guard let embedding else { return }
        embedding.backward(dOut, tokens: a.inputs.baseAddress!, a, context(a))
        gradientsReady?(embedding.span)
    }
}

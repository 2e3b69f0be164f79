import Foundation
import KeelComm
import KeelCore
import KeelData
import KeelKernels
import KeelModel
import KeelParallel

/// What one optimizer step measured.
public struct StepResult: Sendable {
    /// Mean loss over the step's micro-batches and data-parallel replicas (the same on every rank).
    public var loss: Double
    /// Global L2 norm of the averaged gradients, before clipping (the same on every rank).
    public var gradientNorm: Float
    /// The idle share of each pipeline rank's step, from the executor's timeline (one value without a pipeline).
    public var bubbles: [Double]
}

/// The loss or the gradient norm of a step was not finite; the parameters were left unchanged.
public struct TrainingDiverged: Error, CustomStringConvertible {
    public let step: Int
    /// What went wrong, e.g. "loss is NaN".
    public let reason: String
    /// The step's loss and global gradient norm, one of them not finite.
    public let loss: Double
    public let norm: Double

    public var description: String { "training diverged: \(reason) at step \(step)" }

    /// Step `step`'s loss or gradient norm was not finite: the reason names the first that was not, "NaN" or
    /// "infinite".
    init(step: Int, loss: Double, norm: Double) {
        let value = { (x: Double) in x.isNaN ? "NaN" : "infinite" }
        self.step = step
        self.loss = loss
        self.norm = norm
        reason = loss.isFinite ? "gradient norm is \(value(norm))" : "loss is \(value(loss))"
    }

    /// The error a run reports: this one, naming the checkpoint it can go back to (`lastCheckpoint`, nil when it wrote
    /// none), marked as one that resuming would meet again (resuming is bit for bit), so that no supervisor restarts it.
    public func reported(lastCheckpoint: URL?) -> KeelError {
        let kept = lastCheckpoint.map { "; the last good checkpoint is \($0.path)" } ?? "; no checkpoint was written"
        return KeelError(description + kept, rulesOutRestart: true)
    }
}

/// One optimizer step on this rank, in the order it happens (as llm.c's training loop reads):
///
/// 1. **Data**: the step's m micro-batches of this data-parallel replica come from the loader.
/// 2. **Forward and backward**: the pipeline schedule runs every micro-batch's passes through this rank's
///    model chunks (with one stage, that is m forward–backward pairs, i.e. gradient accumulation), adding
///    gradients into each chunk's buffer. Buckets of gradients start their data-parallel reduction the moment
///    their last micro-batch has reported them, while later passes still run.
/// 3. **Tied embedding**: GPT-2's token table lives on the first and the last stage; its two gradients are
///    summed over that pair (Megatron's embedding group) and only then reduced across replicas.
/// 4. **Reduction** completes (gradients a rank computes only part of — the norms' under sequence parallelism,
///    key/value heads shared by tensor ranks — are then summed over their groups); the loss is averaged over
///    replicas and sent from the last stage to all.
/// 5. **Norm**: the global gradient norm over every stage (the tied table counted once), for clipping.
/// 6. **Update**: each chunk's optimizer applies AdamW to its shard and shares the updated parameters.
///
/// One process is the special case of one stage, one replica; every layout runs this same code.
public final class TrainingStep {
    /// This rank's model chunks (one, the whole model, without pipeline parallelism).
    public let chunks: [Transformer]
    public let groups: ParallelState
    public let executor: PipelineExecutor
    /// Gradient reduction across the data-parallel group, per chunk.
    public let parallels: [DataParallel]
    public let optimizers: [Optimizer]
    /// ZeRO-3's parameter gathering, per chunk (nil unless the parameters are sharded).
    private let residencies: [ShardedParameters?]
    public let microBatches: Int
    private let batch: Int
    private let length: Int
    private let gradientClip: Double
    /// The tied token table's span of the gradients in a chunk of this rank, when it holds one of the
    /// table's two copies (the first or the last stage of a pipeline of a tied model).
    private let tied: (chunk: Int, span: Range<Int>, isCopy: Bool)?
    /// Per chunk, the gradients each rank computes only part of, and the groups that complete them
    /// (`Transformer.partialGradients`).
    private let partialGradients: [[(spans: [Range<Int>], group: any Communicator)]]
    /// Per chunk, the spans of its gradients that another rank counts in the gradient norm: the last stage's copy
    /// of the tied token table, and what another tensor rank holds too (`Transformer.duplicateSpans`).
    private let excludedFromNorm: [[Range<Int>]]
    /// Called just before the update changes any parameter or optimizer moment: a background checkpoint writer
    /// waits there until it has its copy of them.
    public var beforeUpdate: (() -> Void)?
    /// The step's micro-batches of token ids, targets and (packed documents) document starts, [m, batch · length]
    /// each.
    private let inputs: UnsafeMutablePointer<Int32>
    private let targets: UnsafeMutablePointer<Int32>
    private let documents: UnsafeMutablePointer<Int32>

    /// Builds this rank's chunks of `model` — the stages `layers` (in stage order, p · v of them) that
    /// `groups.pipeline`'s rank holds under `schedule` with `virtualStages` chunks per rank — initialised from
    /// `seed`, with optimizers over `groups.data`; `sequenceParallel` splits the residual stream's rows over
    /// `groups.tensor`.
    public init(model: ModelConfig, layers: [Range<Int>], schedule: PipelineSchedule, virtualStages: Int,
                training t: TrainConfig.TrainingSettings, distributed: TrainConfig.DistributedSettings,
                sequenceParallel: Bool = false, groups: ParallelState) throws {
        let p = groups.pipeline.size, rank = groups.pipeline.rank
        precondition(layers.count == p * virtualStages)
        self.groups = groups
        microBatches = t.gradientAccumulation
        batch = t.batchSize
        length = t.sequenceLength
        gradientClip = t.gradientClip
        // Under ZeRO-3 each rank initialises only its range of the parameters, below.
        let shardsParameters = distributed.zeroStage == 3 && groups.data.size > 1
        chunks = try (0..<virtualStages).map { c in
            let chunk = try Transformer(config: model, seed: t.seed, layers: layers[c * p + rank], tensor: groups.tensor,
                                        sequenceParallel: sequenceParallel, initialized: !shardsParameters)
            chunk.matrixPrecision = t.precision
            return chunk
        }
        let actions = try schedule.actions(stages: p, virtualStages: virtualStages, microBatches: microBatches, rank: rank)
        // What sizes the messages between stages.
        let shared: [(name: String, value: Int64)] = [
            ("training.batch_size", Int64(batch)), ("training.seq_len", Int64(length)), ("model.d_model", Int64(model.width)),
            ("model.vocab_size", Int64(model.vocabSize))]
        try PipelinePlan(schedule: schedule, virtualStages: virtualStages, microBatches: microBatches, layers: layers,
                         actions: actions, settings: shared).checkAgreement(over: groups.pipeline)
        executor = PipelineExecutor(chunks: chunks, pipeline: groups.pipeline, actions: actions, batch: batch, length: length)
        optimizers = chunks.map {
            Optimizer(model: $0, dataParallel: groups.data, zeroStage: distributed.zeroStage, settings: t.adamW,
                      decayEmbeddings: t.decayEmbeddings)
        }
        residencies = zip(chunks, optimizers).map { chunk, optimizer in
            guard optimizer.shard.shardsParameters else { return nil }
            chunk.table.initialize(chunk.parameters, seed: t.seed, only: optimizer.shard.range)
            let residency = ShardedParameters(shard: optimizer.shard)
            chunk.residency = residency
            return residency
        }
        parallels = optimizers.map { DataParallel(shard: $0.shard, bucketElements: distributed.bucketElements) }
        partialGradients = chunks.map(\.partialGradients)
        let tied = Self.tiedTable(chunks, stages: layers.count)
        self.tied = tied
        let chunks = self.chunks
        excludedFromNorm = chunks.indices.map { chunk in
            let copy = tied.flatMap { $0.isCopy && $0.chunk == chunk ? [$0.span] : nil } ?? []
            return copy + chunks[chunk].duplicateSpans
        }
        inputs = .allocate(capacity: microBatches * batch * length)
        targets = .allocate(capacity: microBatches * batch * length)
        documents = .allocate(capacity: microBatches * batch * length)
    }

    deinit {
        inputs.deallocate()
        targets.deallocate()
        documents.deallocate()
    }

    /// Where this rank holds a copy of a tied token table that another stage also holds.
    private static func tiedTable(_ chunks: [Transformer], stages: Int) -> (chunk: Int, span: Range<Int>, isCopy: Bool)? {
        // A tied model's whole table has no output projection of its own.
        guard stages > 1, !ParameterTable(config: chunks[0].config).entries.contains(where: { $0.slot == .output }) else {
            return nil
        }
        for (index, chunk) in chunks.enumerated() {
            if chunk.isFirstStage, let entry = chunk.table.entries.first(where: { $0.slot == .tokenTable }) {
                return (index, entry.range, false)
            }
            if chunk.isLastStage, let entry = chunk.table.entries.first(where: { $0.slot == .output }) {
                return (index, entry.range, true)
            }
        }
        return nil
    }

    /// Runs optimizer step `number` (from 1) at `learningRate` on the next micro-batches from `loader` (this
    /// replica's part of the global batch). Throws `TrainingDiverged`, before changing any parameter, when the
    /// loss or the gradient norm is not finite.
    public func run(number: Int, learningRate: Float, loader: TokenLoader) throws -> StepResult {
        let label = "step \(number)", profiler = chunks[0].profiler

        // 1. Data.
        for k in 0..<microBatches {
            let offset = k * batch * length
            let fetch = {
                loader.next(inputs: self.inputs + offset, targets: self.targets + offset, documents: self.documents + offset)
            }
            if let profiler {
                profiler.measure(.data, .forward, flops: 0, bytes: 8 * Double(batch * length), fetch)
            } else {
                fetch()
            }
        }

        // 2. Forward and backward, with the data-parallel reduction armed (the tied table held back).
        for (index, (chunk, parallel)) in zip(chunks, parallels).enumerated() {
            // ZeRO-2/3 never hold the whole buffer: released, its pages read as zero without being written.
            if parallel.shard.shardsGradients { chunk.gradients.release(0..<chunk.gradients.count) } else { chunk.gradients.zero() }
            parallel.prepare(microBatches: microBatches, label: label)
            residencies[index]?.label = label
        }
        if let tied {
            let report = chunks[tied.chunk].gradientsReady!
            chunks[tied.chunk].gradientsReady = { span in
                report(span.lowerBound..<min(span.upperBound, max(span.lowerBound, tied.span.lowerBound)))
                report(max(span.lowerBound, min(span.upperBound, tied.span.upperBound))..<span.upperBound)
            }
        }
        let size = batch * length
        // Chat data: the loss is the mean over the targets it counts in the whole step, over every replica — each
        // micro-batch weighs by how many it holds (a micro-batch's own loss is its mean), and the replicas' average
        // of gradients then comes out as the global mean's.
        let packsDocuments = loader.windows.packsDocuments
        let packed: ((Int) -> UnsafePointer<Int32>)? = packsDocuments ? { UnsafePointer(self.documents + $0 * size) } : nil
        let counted = packsDocuments ? (0..<microBatches).map { CrossEntropy.counted(self.targets + $0 * size, count: size) } : []
        let allCounted = packsDocuments
            ? try groups.data.allReduce([Double(counted.reduce(0, +))], .sum, label: "\(label): targets counted")[0] : 0
        let weights: ((Int) -> Float)? = packsDocuments
            ? { k in allCounted > 0 ? Float(Double(counted[k] * self.microBatches * self.groups.data.size) / allCounted) : 0 } : nil
        let losses = try executor.run(inputs: { UnsafePointer(self.inputs + $0 * size) },
                                      targets: { UnsafePointer(self.targets + $0 * size) }, documents: packed,
                                      lossScale: 1 / Float(microBatches), weights: weights, label: label)

        // 3. Tied embedding: both copies get the sum of both stages' gradients, then join the reduction.
        if let tied {
            let gradients = UnsafeMutableBufferPointer(start: chunks[tied.chunk].gradients.pointer + tied.span.lowerBound,
                                                       count: tied.span.count)
            try groups.embedding!.allReduce(gradients, .sum, label: "\(label): tied embedding gradient")
            parallels[tied.chunk].finish(tied.span)
        }

        // 4. Reduction and loss.
        for parallel in parallels { try parallel.synchronizeGradients() }
        for (optimizer, partial) in zip(optimizers, partialGradients) {
            for (spans, group) in partial {
                try optimizer.shard.sum(spans, over: group, label: "\(label): partial gradients")
            }
        }
        var loss: Double
        if packsDocuments {
            let local = losses.enumerated().reduce(0.0) { $0 + Double($1.element) * Double(counted[$1.offset]) }
            let total = try groups.data.allReduce([local], .sum, label: "\(label): loss")[0]
            loss = allCounted > 0 ? total / allCounted : 0
        } else {
            loss = losses.reduce(0.0) { $0 + Double($1) / Double(microBatches) }
            loss = try groups.data.allReduce([loss], .average, label: "\(label): loss")[0]
        }
        if groups.pipeline.size > 1 {
            loss = try groups.pipeline.allReduce([losses.isEmpty ? 0 : loss], .sum, label: "\(label): loss from the last stage")[0]
        }

        // 5. Global gradient norm: over the shards of the data-parallel group (ZeRO-1), the tensor ranks' pieces
        // and the pipeline's stages.
        var sumOfSquares = optimizers.enumerated().reduce(0.0) { $0 + $1.element.shard.sumOfSquares(excluding: excludedFromNorm[$1.offset]) }
        if optimizers[0].shard.isSharded {
            sumOfSquares = try groups.world.allReduce([sumOfSquares], .sum, label: "\(label): gradient norm")[0]
        } else {
            for group in [groups.tensor, groups.pipeline] where group.size > 1 {
                sumOfSquares = try group.allReduce([sumOfSquares], .sum, label: "\(label): gradient norm")[0]
            }
        }
        let gradientNorm = Float(sumOfSquares.squareRoot())
        guard loss.isFinite, gradientNorm.isFinite else {
            throw TrainingDiverged(step: number, loss: loss, norm: Double(gradientNorm))
        }

        // 6. Update, with the clipping factor applied as AdamW reads the gradients.
        let clipping = gradientClip > 0 && Double(gradientNorm) > gradientClip
        let scale = clipping ? Float(gradientClip) / gradientNorm : 1
        beforeUpdate?()
        let update = { for optimizer in self.optimizers { try optimizer.update(learningRate: learningRate, step: number, gradientScale: scale) } }
        if let profiler {
            let parameters = chunks.reduce(0) { $0 + $1.table.count }
            try profiler.measure(.optimizer, .forward, flops: 0, bytes: 16 * Double(parameters), update)
        } else {
            try update()
        }
        // Every pipeline rank's measured bubble of this step.
        let bubbles = try groups.pipeline.allGather([executor.measuredBubble], label: "\(label): pipeline bubble")
        return StepResult(loss: loss, gradientNorm: gradientNorm, bubbles: bubbles)
    }
}

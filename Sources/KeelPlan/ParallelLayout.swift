import KeelParallel

/// One way to spread a training step over devices: tensor × pipeline × data ranks, the pipeline's schedule,
/// the micro-batches, how the data-parallel ranks share state, and what is recomputed.
///
/// Ranks are numbered as Megatron-LM numbers them: tensor ranks adjacent (inside a node), then data-parallel
/// ranks, then pipeline stages outermost.
public struct ParallelLayout: Sendable, Hashable {
    /// Tensor-parallel ranks (Megatron-style: heads, MLP width and vocabulary split).
    public var tensor: Int
    /// Pipeline stages.
    public var pipeline: Int
    /// Data-parallel ranks.
    public var data: Int
    /// The pipeline's schedule (1F1B when there is no pipeline).
    public var schedule: PipelineSchedule
    /// Model chunks per pipeline rank (interleaved schedules only; 1 otherwise).
    public var virtualStages: Int
    /// Sequences per micro-batch.
    public var microBatchSize: Int
    /// Micro-batches per step on each data-parallel rank.
    public var microBatches: Int
    /// 0: every data-parallel rank holds everything and all-reduces gradients; 1: optimizer state sharded
    /// (Megatron's distributed optimizer); 2: gradients too; 3: parameters too (ZeRO-3 / FSDP).
    public var zeroStage: Int
    /// Sequence parallelism: the tensor ranks also split the norms' and residual's rows.
    public var sequenceParallel: Bool
    /// Activation recomputation, Megatron-LM's "block" method: in each model chunk, this many blocks keep only
    /// their input and rerun their forward pass in the backward pass (0: none; all of the chunk's blocks: full).
    public var recomputedLayers: Int

    public init(tensor: Int, pipeline: Int, data: Int, schedule: PipelineSchedule = .oneForwardOneBackward,
                virtualStages: Int = 1, microBatchSize: Int, microBatches: Int, zeroStage: Int,
                sequenceParallel: Bool = false, recomputedLayers: Int = 0) {
        self.tensor = tensor
        self.pipeline = pipeline
        self.data = data
        self.schedule = schedule
        self.virtualStages = virtualStages
        self.microBatchSize = microBatchSize
        self.microBatches = microBatches
        self.zeroStage = zeroStage
        self.sequenceParallel = sequenceParallel
        self.recomputedLayers = recomputedLayers
    }

    /// Devices the layout uses.
    public var devices: Int { tensor * pipeline * data }

    /// A short name, e.g. `tp8 pp16 dp64 interleaved v4 mb1×32 zero1 sp recompute 1` (blocks recomputed per chunk).
    public var name: String {
        var parts = ["tp\(tensor)", "pp\(pipeline)", "dp\(data)"]
        if pipeline > 1 { parts.append(schedule == .interleaved ? "interleaved v\(virtualStages)" : schedule.rawValue) }
        parts.append("mb\(microBatchSize)×\(microBatches)")
        parts.append(zeroStage == 3 ? "fsdp" : "zero\(zeroStage)")
        if sequenceParallel { parts.append("sp") }
        if recomputedLayers > 0 { parts.append("recompute \(recomputedLayers)") }
        return parts.joined(separator: " ")
    }

    /// The family the layout belongs to, for comparing strategies: FSDP (ZeRO-3) with or without tensor
    /// parallelism, pipeline parallelism (with or without it), or plain data (and tensor) parallelism.
    public var strategy: String {
        if zeroStage == 3 { return tensor > 1 ? "fsdp+tp" : "fsdp" }
        if pipeline > 1 { return tensor > 1 ? "pp+tp" : "pp" }
        return tensor > 1 ? "dp+tp" : "dp"
    }
}

extension ParallelLayout {
    /// Blocks on the largest pipeline stage: ⌈layers / p⌉.
    public func stageLayers(of layers: Int) -> Int { (layers + pipeline - 1) / pipeline }

    /// Blocks in one model chunk of the largest stage (the planner only builds layouts where v divides them).
    public func chunkLayers(of layers: Int) -> Int { stageLayers(of: layers) / virtualStages }
}

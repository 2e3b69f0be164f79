import KeelCore
import KeelParallel

/// Memory on the busiest device, bytes.
public struct MemoryBreakdown: Sendable, Equatable {
    /// Weights as computed on, 16-bit or fp32 (a 1/dp share under FSDP).
    public var parameters: Double
    /// Gradient buffer (a 1/dp share from ZeRO-2).
    public var gradients: Double
    /// Adam's two moments and, in mixed precision, fp32 master weights: 8 or 12 bytes per parameter (a 1/dp
    /// share from ZeRO-1).
    public var optimizerState: Double
    /// Activations held for the backward passes of the micro-batches in flight, and the head's logits.
    public var activations: Double
    /// Communication buffers: gradient buckets, FSDP's gathered layers, pipeline messages.
    public var buffers: Double

    public var total: Double { parameters + gradients + optimizerState + activations + buffers }
}

/// One step's time on the critical path, seconds, by what the devices do in it.
public struct TimeBreakdown: Sendable, Equatable {
    /// Forward, backward and recomputed passes and the output head: matrix products at the calibrated share of
    /// peak, the rest at memory bandwidth.
    public var compute: Double
    /// Tensor-parallel all-reduces (or reduce-scatters and all-gathers with sequence parallelism), exposed.
    public var tensorParallel: Double
    /// Idle time of the pipeline's schedule (its bubble).
    public var pipelineBubble: Double
    /// Pipeline sends and receives that the schedule could not hide.
    public var pipelineTransfer: Double
    /// Data-parallel gradient all-reduce or reduce-scatter and parameter all-gather, where not overlapped.
    public var dataParallel: Double
    /// FSDP's parameter all-gathers and gradient reduce-scatters per micro-batch, where not overlapped.
    public var fsdp: Double
    /// The optimizer's update, bound by memory bandwidth.
    public var optimizer: Double

    public var step: Double {
        compute + tensorParallel + pipelineBubble + pipelineTransfer + dataParallel + fsdp + optimizer
    }

    /// The parts by name, in table order.
    public var named: [(name: String, seconds: Double)] {
        [("compute", compute), ("tensor-parallel", tensorParallel), ("pipeline bubble", pipelineBubble),
         ("pipeline send/recv", pipelineTransfer), ("data-parallel", dataParallel), ("fsdp gathers", fsdp),
         ("optimizer", optimizer)]
    }
}

/// Bytes each device sends in one step, by kind of communication (a ring sends (n − 1)/n of the buffer per
/// reduce-scatter or all-gather, twice that per all-reduce).
public struct TrafficBreakdown: Sendable, Equatable {
    public var tensorParallel: Double
    public var pipeline: Double
    public var dataParallel: Double
    public var fsdp: Double
    /// The part of it that crosses the links between nodes.
    public var interNode: Double

    public var total: Double { tensorParallel + pipeline + dataParallel + fsdp }
}

/// What a layout costs: memory, time, throughput.
public struct LayoutEstimate: Sendable {
    public let layout: ParallelLayout
    public let memory: MemoryBreakdown
    /// Usable memory per device: its memory less the headroom.
    public let memoryLimit: Double
    public let time: TimeBreakdown
    public let traffic: TrafficBreakdown
    /// Tokens per second over the whole cluster.
    public let tokensPerSecond: Double
    /// Model FLOPs utilisation: the model's training FLOPs (no recomputation) per second over all devices'
    /// peak.
    public let mfu: Double
    /// FLOP/s each device runs, recomputation included (Megatron-LM's "achieved teraFLOP/s per GPU").
    public let hardwareFLOPsPerDevice: Double

    /// Whether the busiest device's memory fits.
    public var fits: Bool { memory.total <= memoryLimit }

    /// Estimates `layout` for `workload` on `cluster`. The layout must already be consistent with both
    /// (`Planner.layouts` builds only such ones).
    public init(_ layout: ParallelLayout, workload: Workload, cluster: Cluster, assumptions: PlanAssumptions) throws {
        try self.init(layout, workload: workload, cluster: cluster, assumptions: assumptions, held: nil)
    }

    init(_ layout: ParallelLayout, workload: Workload, cluster: Cluster, assumptions: PlanAssumptions,
         held: HeldActivations?) throws {
        try LayoutModel.check(layout, workload: workload, cluster: cluster)
        let model = LayoutModel(layout, workload: workload, cluster: cluster, assumptions: assumptions)
        self.layout = layout
        memory = try model.memory(held: held)
        memoryLimit = model.memoryLimit
        time = try model.time()
        traffic = model.traffic()
        let step = time.step
        tokensPerSecond = workload.tokensPerStep / step
        let devices = Double(layout.devices)
        let cost = model.cost, sequence = workload.sequenceLength
        let recomputed = Double(layout.recomputedLayers) / Double(layout.chunkLayers(of: workload.model.layers))
        mfu = workload.tokensPerStep * cost.trainingFLOPsPerToken(sequence: sequence)
            / (step * devices * cluster.accelerator.peakFLOPs)
        hardwareFLOPsPerDevice = workload.tokensPerStep
            * cost.hardwareFLOPsPerToken(sequence: sequence, recomputedShare: recomputed) / (step * devices)
    }
}

/// The formulas of one layout, per block and per pass, shared by its memory and its time.
struct LayoutModel {
    let layout: ParallelLayout
    let workload: Workload
    let cluster: Cluster
    let assumptions: PlanAssumptions
    let cost: ModelCost
    /// Tokens of one micro-batch.
    let tokens: Double
    let stageLayers: Int
    let chunkLayers: Int
    /// One block's forward pass for one micro-batch on one tensor rank (products and memory-bound passes).
    let forwardLayer: Double
    /// One tensor-parallel all-reduce of a block's output rows, or with sequence parallelism the reduce-scatter
    /// and all-gather that replace it (the same bytes, at those collectives' own rates).
    let allReduce: Double
    /// Bytes one block keeps for its backward, per micro-batch.
    let layerBytes: Double
    /// Parameters per tensor rank on the first pipeline rank (its blocks and the embedding) and on the last (its
    /// blocks and the head; a tied head is a copy of the token table once the stages differ); the same rank
    /// without a pipeline.
    let firstParameters: Double, lastParameters: Double
    /// The larger of the two: what the step's data-parallel communication and update wait for.
    var localParameters: Double { max(firstParameters, lastParameters) }

    var memoryLimit: Double { cluster.accelerator.memoryBytes * (1 - assumptions.memoryHeadroom) }

    init(_ layout: ParallelLayout, workload: Workload, cluster: Cluster, assumptions: PlanAssumptions) {
        self.layout = layout
        self.workload = workload
        self.cluster = cluster
        self.assumptions = assumptions
        let config = workload.model
        cost = ModelCost(config)
        let t = Double(layout.tensor)
        tokens = Double(layout.microBatchSize * workload.sequenceLength)
        stageLayers = layout.stageLayers(of: config.layers)
        chunkLayers = layout.chunkLayers(of: config.layers)
        let accelerator = cluster.accelerator
        // ModelCost counts 16-bit activations; fp32 ones take twice the bytes.
        layerBytes = tokens * assumptions.elementBytes / 2 * cost.activationBytesPerLayer(
            sequence: workload.sequenceLength, tensor: layout.tensor, sequenceParallel: layout.sequenceParallel,
            attention: assumptions.attention)
        let layerFLOPs = cost.layerForwardFLOPs(sequence: workload.sequenceLength) * tokens / t
        forwardLayer = layerFLOPs / (assumptions.efficiency * accelerator.peakFLOPs) + layerBytes / accelerator.memoryBandwidth
        let rows = tokens * Double(config.width) * assumptions.elementBytes
        let tensorLink = cluster.link(groupSize: layout.tensor, stride: 1)
        allReduce = layout.sequenceParallel
            ? CollectiveCost.reduceScatter(bytes: rows, devices: layout.tensor, link: tensorLink)
                + CollectiveCost.allGather(bytes: rows, devices: layout.tensor, link: tensorLink)
            : CollectiveCost.allReduce(bytes: rows, devices: layout.tensor, link: tensorLink)
        let blocks = Double(stageLayers) * cost.parametersPerLayer
        if layout.pipeline == 1 {
            firstParameters = (blocks + cost.embeddingParameters + cost.headParameters) / t
            lastParameters = firstParameters
        } else {
            let tiedCopy = config.tiedEmbeddings ? Double(config.vocabSize * config.width) : 0
            firstParameters = (blocks + cost.embeddingParameters) / t
            lastParameters = (blocks + cost.headParameters + tiedCopy) / t
        }
    }

    /// A chunk's forward and backward for one micro-batch: (compute, tensor-parallel communication) of each.
    /// Two all-reduces of the block's output rows per pass (attention and MLP; sequence parallelism makes each a
    /// reduce-scatter and an all-gather, the same bytes); recomputed blocks rerun their forward and its
    /// all-reduces in the backward.
    var chunkPasses: (forward: Double, forwardTensor: Double, backward: Double, backwardTensor: Double) {
        let layers = Double(chunkLayers), recomputed = Double(layout.recomputedLayers)
        return (layers * forwardLayer, layers * 2 * allReduce,
                layers * 2 * forwardLayer + recomputed * forwardLayer, (layers + recomputed) * 2 * allReduce)
    }

    /// Throws unless `layout` is one this model can estimate for `workload` on `cluster`: positive sizes, all the
    /// cluster's devices, the workload's batch, v dividing the largest stage's blocks with a block in every chunk,
    /// recomputation within a chunk, a ZeRO stage of 0–3.
    static func check(_ layout: ParallelLayout, workload: Workload, cluster: Cluster) throws {
        let stage = layout.stageLayers(of: workload.model.layers)
        func require(_ ok: Bool, _ what: String) throws {
            if !ok { throw KeelError("plan: layout \(layout.name): \(what)") }
        }
        try require(layout.tensor >= 1 && layout.pipeline >= 1 && layout.data >= 1, "sizes must be at least 1")
        try require(layout.pipeline <= workload.model.layers, "more stages than blocks")
        try require(layout.virtualStages >= 1 && stage % layout.virtualStages == 0,
                    "\(layout.virtualStages) chunks do not divide a stage's \(stage) blocks")
        try require(layout.pipeline * layout.virtualStages <= workload.model.layers,
                    "\(layout.pipeline * layout.virtualStages) chunks for \(workload.model.layers) blocks leave some empty")
        try require((0...layout.chunkLayers(of: workload.model.layers)).contains(layout.recomputedLayers),
                    "recomputes more blocks than a chunk has")
        try require(layout.microBatchSize >= 1 && layout.microBatches >= 1, "micro-batches must be positive")
        try require(layout.devices == cluster.devices, "uses \(layout.devices) devices of the cluster's \(cluster.devices)")
        try require(layout.data * layout.microBatchSize * layout.microBatches == workload.globalBatch,
                    "holds \(layout.data * layout.microBatchSize * layout.microBatches) sequences a step, not the workload's \(workload.globalBatch)")
        try require((0...3).contains(layout.zeroStage), "ZeRO stages are 0–3")
    }

    /// Each pipeline rank's most (micro-batch, chunk) activations held at once, from the schedule's action lists.
    func heldActivations() throws -> HeldActivations {
        guard layout.pipeline > 1 else { return .unpipelined }
        return try PipelineTiming.heldActivations(layout.schedule, stages: layout.pipeline,
                                                  virtualStages: layout.virtualStages, microBatches: layout.microBatches)
    }

    /// Memory of the busiest device: the first pipeline rank (the embedding; with 1F1B the most activations in flight)
    /// or the last (the head, its logits; with ZB-H1 as many activations, and W passes waiting), whichever needs more.
    func memory(held: HeldActivations? = nil) throws -> MemoryBreakdown {
        let held = try held ?? heldActivations()
        let first = rank(parameters: firstParameters, inFlight: held.slots[0], awaitingWeights: held.awaitingWeights[0],
                         holdsHead: layout.pipeline == 1)
        guard layout.pipeline > 1 else { return first }
        let last = rank(parameters: lastParameters, inFlight: held.slots[held.slots.count - 1],
                        awaitingWeights: held.awaitingWeights[held.slots.count - 1], holdsHead: true)
        return first.total >= last.total ? first : last
    }

    /// One pipeline rank's memory: `parameters` per tensor rank, `inFlight` chunks of activations, `awaitingWeights`
    /// of them holding their blocks' output gradients for W as well.
    private func rank(parameters: Double, inFlight: Int, awaitingWeights: Int, holdsHead: Bool) -> MemoryBreakdown {
        let config = workload.model
        let t = Double(layout.tensor), dp = Double(layout.data), g = assumptions.gradientBytes
        let recomputed = Double(layout.recomputedLayers)
        let e = assumptions.elementBytes
        let inputBytes = tokens * e / 2 * cost.recomputedActivationBytesPerLayer(tensor: layout.tensor,
                                                                        sequenceParallel: layout.sequenceParallel)
        let perChunk = (Double(chunkLayers) - recomputed) * layerBytes + recomputed * inputBytes
        let outputGradients = Double(chunkLayers) * tokens
            * cost.weightGradientInputBytesPerLayer(tensor: layout.tensor, sequenceParallel: layout.sequenceParallel, elementBytes: e)
        // The backward pass reaches a chunk's recomputed blocks (its first r) last: by then its other blocks' activations
        // are freed, and it holds the r inputs and one block recomputed whole. So recomputation adds to the peak only
        // when every block of the chunk is recomputed.
        let recomputing = recomputed > 0 ? recomputed * inputBytes + layerBytes : 0
        let activations = Double(inFlight - 1) * perChunk + max(perChunk, recomputing)
            + Double(awaitingWeights) * outputGradients
            + (holdsHead ? tokens * cost.headActivationBytes(tensor: layout.tensor, elementBytes: e) : 0)
        var buffers = layout.pipeline > 1 ? 4 * tokens * Double(config.width) * e / t : 0
        if layout.zeroStage == 3 {
            buffers += (2 * e + g) * cost.parametersPerLayer / t   // two layers gathered, one layer's gradient
        } else if layout.data > 1 {
            buffers += min(parameters, 2 * 40e6) * g               // two gradient buckets of 40M elements
        }
        return MemoryBreakdown(
            parameters: e * parameters / (layout.zeroStage == 3 ? dp : 1),
            gradients: g * parameters / (layout.zeroStage >= 2 ? dp : 1),
            optimizerState: assumptions.optimizerBytes * parameters / (layout.zeroStage >= 1 ? dp : 1),
            activations: activations, buffers: buffers)
    }

    func traffic() -> TrafficBreakdown {
        let t = layout.tensor, p = layout.pipeline, dp = layout.data
        let m = Double(layout.microBatches), v = Double(layout.virtualStages)
        func ring(_ bytes: Double, _ n: Int) -> Double { n > 1 ? Double(n - 1) / Double(n) * bytes : 0 }
        let e = assumptions.elementBytes
        let rows = tokens * Double(workload.model.width) * e
        let allReducesPerChunk = Double(2 * chunkLayers + 2 * (chunkLayers + layout.recomputedLayers))
        let tensor = m * v * allReducesPerChunk * 2 * ring(rows, t)
        // Each chunk boundary sends activations forward and gradients back, per micro-batch.
        let pipeline = p > 1 ? 2 * m * v * rows / Double(t) : 0
        let g = assumptions.gradientBytes, local = localParameters
        var data = 0.0, fsdp = 0.0
        switch layout.zeroStage {
        case 0: data = 2 * ring(local * g, dp)
        case 1: data = ring(local * g, dp) + ring(local * e, dp)
        case 2: data = m * ring(local * g, dp) + ring(local * e, dp)
        default: fsdp = m * (2 * ring(local * e, dp) + ring(local * g, dp))
        }
        func crosses(_ size: Int, _ stride: Int) -> Bool { size > 1 && size * stride > cluster.devicesPerNode }
        let interNode = (crosses(t, 1) ? tensor : 0) + (crosses(p, t * dp) ? pipeline : 0) + (crosses(dp, t) ? data + fsdp : 0)
        return TrafficBreakdown(tensorParallel: tensor, pipeline: pipeline, dataParallel: data, fsdp: fsdp, interNode: interNode)
    }

    /// The step's time; without `simulatingPipeline`, the pipeline's bubble and messages are left at zero,
    /// which makes it a lower bound of the step.
    func time(simulatingPipeline: Bool = true) throws -> TimeBreakdown {
        let config = workload.model
        let accelerator = cluster.accelerator
        let t = Double(layout.tensor), p = layout.pipeline, dp = layout.data, v = Double(layout.virtualStages)
        let m = Double(layout.microBatches)
        let passes = chunkPasses
        let chunkForward = passes.forward + passes.forwardTensor
        let chunkBackward = passes.backward + passes.backwardTensor
        let busy = m * v * (chunkForward + chunkBackward)
        // The output head and loss on the last stage: three passes of its product, and the fp32 logits
        // written and read back.
        let headTime = 3 * cost.headForwardFLOPs * tokens / t / (assumptions.efficiency * accelerator.peakFLOPs)
            + 2 * tokens * 4 * Double(config.vocabSize) / t / accelerator.memoryBandwidth
        let compute = m * v * (passes.forward + passes.backward) + m * headTime
        let tensorParallel = m * v * (passes.forwardTensor + passes.backwardTensor)

        var bubble = 0.0, transfer = 0.0
        if p > 1 && simulatingPipeline {
            // ZB-H1 splits each backward into its input half (which carries recomputation and the tensor
            // all-reduces) and its weight half (one forward's worth of products).
            let weightHalf = layout.schedule == .zeroBubbleH1 ? passes.forward : 0
            let costs = ScheduleCosts(forward: chunkForward, backwardInput: chunkBackward - weightHalf,
                                      backwardWeight: weightHalf)
            let idle = try PipelineTiming.step(layout.schedule, stages: p, virtualStages: layout.virtualStages,
                                               microBatches: layout.microBatches, costs: costs)
            var withMessages = costs
            withMessages.transfer = CollectiveCost.message(bytes: tokens * Double(config.width) * assumptions.elementBytes / t,
                                                           link: cluster.link(groupSize: p, stride: layout.tensor * dp))
            let sent = try PipelineTiming.step(layout.schedule, stages: p, virtualStages: layout.virtualStages,
                                               microBatches: layout.microBatches, costs: withMessages)
            bubble = max(0, idle - busy)
            transfer = max(0, sent - idle)
        }

        let g = assumptions.gradientBytes
        let local = localParameters
        let link = cluster.link(groupSize: dp, stride: layout.tensor)
        let stageForward = v * passes.forward, stageBackward = v * passes.backward
        // The collectives go a piece at a time, each a ring of its own that pays its n − 1 latencies: FSDP a layer at a
        // time (the stage's blocks, and its embedding or head), ZeRO 0–2 a 40M-element bucket at a time (Megatron's
        // bucket; the memory model holds two). At a thousand devices a piece's latencies are milliseconds.
        let pieceCount = layout.zeroStage == 3 ? stageLayers + 1 : max(1, Int((local / 40e6).rounded(.up)))
        let pieces = Double(pieceCount)
        // Overlapped communication hides behind compute, except the last piece.
        func exposed(_ seconds: Double, behind window: Double) -> Double {
            assumptions.overlapDataParallel ? max(seconds - window, seconds / pieces) : seconds
        }
        let gather = CollectiveCost.allGather(bytes: local * assumptions.elementBytes, devices: dp, link: link, pieces: pieceCount)
        let scatter = CollectiveCost.reduceScatter(bytes: local * g, devices: dp, link: link, pieces: pieceCount)
        var dataParallel = 0.0, fsdp = 0.0
        switch layout.zeroStage {
        case 0:
            dataParallel = exposed(CollectiveCost.allReduce(bytes: local * g, devices: dp, link: link, pieces: pieceCount),
                                   behind: stageBackward)
        case 1:
            dataParallel = exposed(scatter, behind: stageBackward) + exposed(gather, behind: stageForward)
        case 2:
            dataParallel = m * exposed(scatter, behind: stageBackward) + exposed(gather, behind: stageForward)
        default:
            fsdp = m * (exposed(gather, behind: stageForward) + exposed(gather + scatter, behind: stageBackward))
        }
        let updated = layout.zeroStage >= 1 ? local / Double(dp) : local
        // AdamW reads and writes the fp32 weights and both moments, reads the gradient, and in mixed precision
        // writes the 16-bit weights.
        let optimizer = updated * (24 + g + (assumptions.precision == .bf16 ? 2 : 0)) / accelerator.memoryBandwidth
        return TimeBreakdown(compute: compute, tensorParallel: tensorParallel, pipelineBubble: bubble,
                             pipelineTransfer: transfer, dataParallel: dataParallel, fsdp: fsdp, optimizer: optimizer)
    }
}

import KeelCore
import KeelModel

/// What is trained: the model, the sequence length and the global batch of one optimizer step.
public struct Workload: Sendable, Equatable {
    public var model: ModelConfig
    /// Tokens per sequence.
    public var sequenceLength: Int
    /// Sequences per optimizer step, over all data-parallel ranks.
    public var globalBatch: Int

    public init(model: ModelConfig, sequenceLength: Int, globalBatch: Int) {
        self.model = model
        self.sequenceLength = sequenceLength
        self.globalBatch = globalBatch
    }

    /// Tokens per optimizer step.
    public var tokensPerStep: Double { Double(sequenceLength) * Double(globalBatch) }

    /// Checks the sizes and names the one at fault.
    public func validate() throws {
        func require(_ ok: Bool, _ message: String) throws { if !ok { throw KeelError("plan: \(message)") } }
        let m = model
        try require(m.layers >= 1, "the model needs at least 1 layer (got \(m.layers))")
        try require(m.width >= 1 && m.heads >= 1 && m.width % m.heads == 0,
                    "the width (\(m.width)) must be a positive multiple of the heads (\(m.heads))")
        try require(m.kvHeads >= 1 && m.heads % m.kvHeads == 0,
                    "the heads (\(m.heads)) must be a multiple of the key/value heads (\(m.kvHeads))")
        try require(m.hiddenWidth >= 1, "the MLP width must be positive (got \(m.hiddenWidth))")
        try require(m.vocabSize >= 1, "the vocabulary must be positive (got \(m.vocabSize))")
        try require((1...1 << 24).contains(sequenceLength), "the sequence length must be from 1 to \(1 << 24) (got \(sequenceLength))")
        try require((1...1 << 30).contains(globalBatch), "the global batch must be from 1 to \(1 << 30) sequences (got \(globalBatch))")
    }
}

/// The number formats of a training run.
public enum PlanPrecision: String, Sendable, CaseIterable {
    /// Mixed precision: 16-bit weights, activations and messages; fp32 master weights and Adam moments (12 bytes
    /// per parameter).
    case bf16
    /// fp32 throughout (Keel on CPUs: its bf16 mode rounds only matrix operands, so it stores as fp32 does):
    /// weights, activations and messages 4 bytes, Adam's moments 8 bytes per parameter.
    case fp32
}

/// The modelling choices that are not the layout: how close to peak the matrix products run, how attention
/// stores its scores, number formats, overlap, and the memory kept free.
public struct PlanAssumptions: Sendable, Equatable {
    /// The share of peak FLOP/s that large matrix products reach: the calibration constant, fitted once
    /// against published runs (`keel plan --validate`) and used for every accelerator.
    public var efficiency: Double
    public var attention: AttentionKind
    /// Bytes per gradient element as accumulated and reduced (4: fp32, as Megatron-LM's main gradients and
    /// Llama 3's reduce-scatter; 2: bf16/fp16).
    public var gradientBytes: Double
    /// Data-parallel and FSDP communication overlaps the backward (and the next forward) pass where the
    /// framework allows it; without overlap it all waits for the backward to end.
    public var overlapDataParallel: Bool
    /// The share of device memory left for the allocator's fragmentation, the runtime and the collectives'
    /// own buffers.
    public var memoryHeadroom: Double
    public var precision: PlanPrecision

    /// Bytes of a weight as computed on, an activation and a message element.
    public var elementBytes: Double { precision == .fp32 ? 4 : 2 }

    /// Optimizer state per parameter: fp32 master weights (mixed precision only) and Adam's two moments.
    public var optimizerBytes: Double { precision == .fp32 ? 8 : 12 }

    /// The calibration constant: the value that fits Narayanan et al.'s Table 1 and Llama 3's Table 4 best
    /// (`keel plan --validate` prints the fit).
    public static let calibratedEfficiency = 0.595

    public init(efficiency: Double = calibratedEfficiency, attention: AttentionKind = .flash, gradientBytes: Double = 4,
                overlapDataParallel: Bool = true, memoryHeadroom: Double = 0.1, precision: PlanPrecision = .bf16) {
        self.efficiency = efficiency
        self.attention = attention
        self.gradientBytes = gradientBytes
        self.overlapDataParallel = overlapDataParallel
        self.memoryHeadroom = memoryHeadroom
        self.precision = precision
    }

    /// Checks the figures and names the one at fault.
    public func validate() throws {
        func require(_ ok: Bool, _ message: String) throws { if !ok { throw KeelError("plan: \(message)") } }
        try require(efficiency > 0 && efficiency <= 1, "the efficiency must be in (0, 1] (got \(efficiency))")
        try require(gradientBytes == 2 || gradientBytes == 4, "gradients are 2 or 4 bytes (got \(gradientBytes))")
        try require(precision == .bf16 || gradientBytes == 4, "fp32 training has 4-byte gradients (got \(gradientBytes))")
        try require(memoryHeadroom >= 0 && memoryHeadroom < 1, "the memory headroom must be in [0, 1) (got \(memoryHeadroom))")
    }
}

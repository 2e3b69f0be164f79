import KeelKernels

/// The parts a decoder-only transformer is built from, in the order of its flat parameter buffer.
public enum ModelPart: Hashable, Sendable {
    /// Token embedding (and GPT-2's position embedding).
    case embedding
    /// Transformer block `layer`.
    case block(Int)
    /// Final norm and output projection (GPT-2's projection is the token embedding, tied).
    case head
}

/// The role a tensor plays inside its part: how the part's forward and backward find it, whatever the
/// family calls it. Several tensors may share a slot when one matrix product reads them together (Llama's
/// q/k/v and gate/up projections, adjacent in the buffer); the slot's offset is the first one's.
public enum TensorSlot: Hashable, Sendable {
    case tokenTable, positionTable
    case attentionNorm, attentionNormBias, qkv, qkvBias, attentionOutput, attentionOutputBias
    case mlpNorm, mlpNormBias, up, upBias, down, downBias
    case finalNorm, finalNormBias, output
}

/// One tensor as a family declares it.
public struct TensorSpec: Sendable, Equatable {
    /// Hugging Face name, e.g. `transformer.h.0.attn.c_attn.weight`.
    public let name: String
    public let shape: [Int]
    public let role: ParameterRole
    public let initialization: Initialization
    public let slot: TensorSlot
    /// How tensor parallelism cuts it.
    public let split: TensorSplit
}

/// Everything a transformer family says about itself, in one place: its tensors part by part (names,
/// shapes, roles, initialisation, slots, in buffer order) and its Hugging Face `config.json`.
public protocol ArchitectureFamily {
    static func tensors(of part: ModelPart, _ config: ModelConfig) -> [TensorSpec]
    /// How the family stores a projection's weight: `[in, out]` (GPT-2's Conv1D) or `[out, in]` (Linear).
    static var weightLayout: WeightLayout { get }
    /// The `config.json` fields of the family's `transformers` class (shared ones such as `vocab_size` aside).
    static func huggingFaceConfig(_ config: ModelConfig) -> [String: Any]
}

extension Architecture {
    /// The family's declarations.
    public var family: any ArchitectureFamily.Type {
        switch self {
        case .gpt2: GPT2.self
        case .llama: Llama.self
        }
    }
}

extension ModelConfig {
    /// Standard deviation of the initial weights.
    static let initialStd: Float = 0.02
    /// Residual projections are scaled down with depth (GPT-2 paper) so the stream's variance stays bounded.
    var residualStd: Float { ModelConfig.initialStd / Float(2 * layers).squareRoot() }
}

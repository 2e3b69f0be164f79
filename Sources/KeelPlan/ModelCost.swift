import KeelModel

/// How attention keeps its scores: FlashAttention-style blocks that keep only each row's log-sum-exp (Keel's
/// kernel, and every current framework's), or the T × T score and probability matrices written to memory, as
/// Megatron-LM did in 2021.
public enum AttentionKind: String, Sendable, Codable, CaseIterable {
    case flash
    case materialized
}

/// A model's sizes, FLOPs and activation bytes per token, the inputs of every formula in the plan.
///
/// FLOPs follow Narayanan et al. (SC '21, eq. 3): a matrix product of an [n, k] by a [k, m] matrix costs 2nkm;
/// attention costs 4·s·h per token and layer (QKᵀ and the product with V over the full sequence s, causal mask
/// or not); a training step is three forward passes' worth (backward = 2 × forward), four with full
/// activation recomputation. Activation bytes follow Korthikanti et al. ("Reducing Activation Recomputation
/// in Large Transformer Models", 2022, §4) for GPT-2-style layers, and the same accounting for Llama's layers
/// (no dropout; grouped K and V; SwiGLU's two products).
public struct ModelCost: Sendable, Equatable {
    public let config: ModelConfig

    public init(_ config: ModelConfig) {
        self.config = config
    }

    private var h: Double { Double(config.width) }
    private var f: Double { Double(config.hiddenWidth) }
    private var kvWidth: Double { Double(config.kvHeads * config.headDim) }
    private var vocabulary: Double { Double(config.vocabSize) }

    /// Parameters of one block that enter matrix products: Q, K, V and the output projection, and the MLP's
    /// two (GPT-2) or three (Llama) matrices.
    public var matrixParametersPerLayer: Double {
        let attention = h * (h + 2 * kvWidth) + h * h
        let mlp = config.architecture == .gpt2 ? 2 * h * f : 3 * h * f
        return attention + mlp
    }

    /// All parameters of one block: its matrices, biases (GPT-2) and norms.
    public var parametersPerLayer: Double {
        switch config.architecture {
        case .gpt2: matrixParametersPerLayer + (h + 2 * kvWidth) + h + f + h + 4 * h
        case .llama: matrixParametersPerLayer + 2 * h
        }
    }

    /// The token embedding (and GPT-2's position table).
    public var embeddingParameters: Double {
        vocabulary * h + (config.architecture == .gpt2 ? Double(config.maxLength) * h : 0)
    }

    /// The output head's own matrix (none when tied to the embedding) and the final norm.
    public var headParameters: Double {
        (config.tiedEmbeddings ? 0 : vocabulary * h) + (config.architecture == .gpt2 ? 2 * h : h)
    }

    /// Every parameter of the model.
    public var parameters: Double {
        Double(config.layers) * parametersPerLayer + embeddingParameters + headParameters
    }

    /// Forward FLOPs of one block for one token of a sequence of `sequence` tokens.
    public func layerForwardFLOPs(sequence: Int) -> Double {
        2 * matrixParametersPerLayer + 4 * Double(sequence) * h
    }

    /// Forward FLOPs of the output head for one token.
    public var headForwardFLOPs: Double { 2 * h * vocabulary }

    /// Model FLOPs of one training token (forward + backward, no recomputation): what MFU counts.
    public func trainingFLOPsPerToken(sequence: Int) -> Double {
        3 * (Double(config.layers) * layerForwardFLOPs(sequence: sequence) + headForwardFLOPs)
    }

    /// FLOPs the hardware runs per token: the model's, plus another forward pass of the share of blocks
    /// recomputed in the backward pass (1: all — what Megatron-LM's "achieved teraFLOP/s" counts).
    public func hardwareFLOPsPerToken(sequence: Int, recomputedShare: Double) -> Double {
        trainingFLOPsPerToken(sequence: sequence) + recomputedShare * Double(config.layers) * layerForwardFLOPs(sequence: sequence)
    }

    /// Bytes one block keeps for its backward pass, per token, with 16-bit activations, on one of `tensor`
    /// tensor-parallel ranks.
    ///
    /// GPT-2 (Korthikanti et al. Table 2): 10h bytes replicated on every tensor rank (two norm inputs, the
    /// inputs of the QKV and first MLP products, two dropout masks), 24h split (Q, K, V, the output
    /// projection's input, the MLP's two d_ff = 4h activations: 4h + 4·kv + 4·d_ff), and 5·a·s split for materialised attention (scores
    /// after softmax, their dropout mask and output). Llama: 8h replicated (two norm inputs, two product
    /// inputs), 4h + 4·kv + 6·d_ff split (Q, K, V after RoPE, the attention output, gate and up outputs,
    /// SwiGLU's output), and 2·a·s for materialised attention (the probabilities). Sequence parallelism
    /// splits the replicated part too.
    public func activationBytesPerLayer(sequence: Int, tensor: Int, sequenceParallel: Bool, attention: AttentionKind) -> Double {
        let t = Double(tensor), s = Double(sequence), a = Double(config.heads)
        let replicated: Double, split: Double, scores: Double
        switch config.architecture {
        case .gpt2:
            replicated = 10 * h
            split = 4 * h + 4 * kvWidth + 4 * f
            scores = 5 * a * s
        case .llama:
            replicated = 8 * h
            split = 4 * h + 4 * kvWidth + 6 * f
            scores = 2 * a * s
        }
        let attentionBytes = attention == .materialized ? scores : 4 * a   // flash: one fp32 log-sum-exp per head
        return replicated / (sequenceParallel ? t : 1) + (split + attentionBytes) / t
    }

    /// Bytes per token of one block's output gradients that a split backward's W pass reads after its B (ZB-H1):
    /// those of its products (Q, K and V; the attention output projection; the MLP's first product or gate and up;
    /// its second), `elementBytes` each; the outputs of the row-parallel products are whole on every tensor rank
    /// unless sequence parallelism splits them.
    public func weightGradientInputBytesPerLayer(tensor: Int, sequenceParallel: Bool, elementBytes: Double = 2) -> Double {
        let t = Double(tensor)
        let mlpIn = config.architecture == .llama ? 2 * f : f
        return elementBytes * ((h + 2 * kvWidth + mlpIn) / t + 2 * h / (sequenceParallel ? t : 1))
    }

    /// Bytes per token that one block keeps when it is recomputed in the backward pass: its input only.
    public func recomputedActivationBytesPerLayer(tensor: Int, sequenceParallel: Bool) -> Double {
        2 * h / (sequenceParallel ? Double(tensor) : 1)
    }

    /// Bytes per token of the output head's activations on one tensor rank: the final norm's input and output
    /// (`elementBytes` each), and the fp32 logits the loss reads and overwrites with their gradient.
    public func headActivationBytes(tensor: Int, elementBytes: Double = 2) -> Double {
        2 * elementBytes * h + 4 * vocabulary / Double(tensor)
    }
}

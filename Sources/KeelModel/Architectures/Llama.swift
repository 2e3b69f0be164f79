import KeelKernels

/// Llama (`LlamaForCausalLM`): RoPE, RMSNorm without bias, SwiGLU MLP, grouped-query attention, no biases,
/// an output head of its own unless `tiedEmbeddings` makes it the token embedding. Weights are Linear's `[out, in]`; q/k/v and gate/up are adjacent so each group is
/// one matrix product.
public enum Llama: ArchitectureFamily {
    public static let weightLayout = WeightLayout.outputMajor

    public static func tensors(of part: ModelPart, _ config: ModelConfig) -> [TensorSpec] {
        let c = config.width, f = config.hiddenWidth, std = ModelConfig.initialStd
        let q = config.heads * config.headDim, kv = config.kvHeads * config.headDim
        func spec(_ name: String, _ shape: [Int], _ role: ParameterRole, _ initialization: Initialization,
                  _ slot: TensorSlot, _ split: TensorSplit = .replicated) -> TensorSpec {
            TensorSpec(name: name, shape: shape, role: role, initialization: initialization, slot: slot, split: split)
        }
        // Linear weights are [out, in]: column-parallel projections split the rows (axis 0), row-parallel ones
        // the columns (axis 1).
        func rows(_ count: Int, pieces: Int? = nil) -> TensorSplit { .split(axis: 0, blocks: [count], pieces: pieces) }
        func columns(_ count: Int) -> TensorSplit { .split(axis: 1, blocks: [count]) }
        switch part {
        case .embedding:
            return [spec("model.embed_tokens.weight", [config.vocabSize, c], .embedding, .normal(std: std), .tokenTable,
                         rows(config.vocabSize))]
        case .block(let layer):
            let p = "model.layers.\(layer)."
            return [
                spec(p + "input_layernorm.weight", [c], .norm, .ones, .attentionNorm),
                spec(p + "self_attn.q_proj.weight", [q, c], .matrix, .normal(std: std), .qkv, rows(q)),
                // Never cut inside a key/value head: with more tensor ranks than kv heads, ranks share them.
                spec(p + "self_attn.k_proj.weight", [kv, c], .matrix, .normal(std: std), .qkv, rows(kv, pieces: config.kvHeads)),
                spec(p + "self_attn.v_proj.weight", [kv, c], .matrix, .normal(std: std), .qkv, rows(kv, pieces: config.kvHeads)),
                spec(p + "self_attn.o_proj.weight", [c, q], .matrix, .normal(std: config.residualStd), .attentionOutput,
                     columns(q)),
                spec(p + "post_attention_layernorm.weight", [c], .norm, .ones, .mlpNorm),
                spec(p + "mlp.gate_proj.weight", [f, c], .matrix, .normal(std: std), .up, rows(f)),
                spec(p + "mlp.up_proj.weight", [f, c], .matrix, .normal(std: std), .up, rows(f)),
                spec(p + "mlp.down_proj.weight", [c, f], .matrix, .normal(std: config.residualStd), .down, columns(f)),
            ]
        case .head:
            let norm = spec("model.norm.weight", [c], .norm, .ones, .finalNorm)
            if config.tiedEmbeddings { return [norm] }
            return [norm, spec("lm_head.weight", [config.vocabSize, c], .matrix, .normal(std: std), .output, rows(config.vocabSize))]
        }
    }

    public static func huggingFaceConfig(_ config: ModelConfig) -> [String: Any] {
        [
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": config.width, "intermediate_size": config.hiddenWidth,
            "num_hidden_layers": config.layers, "num_attention_heads": config.heads,
            "num_key_value_heads": config.kvHeads, "head_dim": config.headDim,
            "max_position_embeddings": config.maxLength, "rms_norm_eps": Double("\(config.normEpsilon)") ?? Double(config.normEpsilon),
            "rope_theta": config.ropeTheta, "hidden_act": "silu", "tie_word_embeddings": config.tiedEmbeddings,
            "attention_bias": false, "mlp_bias": false, "initializer_range": 0.02,
        ]
    }
}

import KeelKernels

/// GPT-2 (`GPT2LMHeadModel`): learned positions, LayerNorm with bias, GELU-tanh MLP, biases on every
/// projection, the output head tied to the token embedding. Weights are Conv1D's `[in, out]`.
public enum GPT2: ArchitectureFamily {
    public static let weightLayout = WeightLayout.inputMajor

    public static func tensors(of part: ModelPart, _ config: ModelConfig) -> [TensorSpec] {
        let c = config.width, f = config.hiddenWidth, std = ModelConfig.initialStd
        func spec(_ name: String, _ shape: [Int], _ role: ParameterRole, _ initialization: Initialization,
                  _ slot: TensorSlot, _ split: TensorSplit = .replicated) -> TensorSpec {
            TensorSpec(name: name, shape: shape, role: role, initialization: initialization, slot: slot, split: split)
        }
        // Conv1D weights are [in, out]: column-parallel projections split the columns (axis 1), row-parallel
        // ones the rows (axis 0); q | k | v are three blocks of c.
        switch part {
        case .embedding:
            return [spec("transformer.wte.weight", [config.vocabSize, c], .embedding, .normal(std: std), .tokenTable,
                         .split(axis: 0, blocks: [config.vocabSize])),
                    spec("transformer.wpe.weight", [config.maxLength, c], .embedding, .normal(std: std), .positionTable)]
        case .block(let layer):
            let p = "transformer.h.\(layer)."
            return [
                spec(p + "ln_1.weight", [c], .norm, .ones, .attentionNorm),
                spec(p + "ln_1.bias", [c], .bias, .zeros, .attentionNormBias),
                spec(p + "attn.c_attn.weight", [c, 3 * c], .matrix, .normal(std: std), .qkv, .split(axis: 1, blocks: [c, c, c])),
                spec(p + "attn.c_attn.bias", [3 * c], .bias, .zeros, .qkvBias, .split(axis: 0, blocks: [c, c, c])),
                spec(p + "attn.c_proj.weight", [c, c], .matrix, .normal(std: config.residualStd), .attentionOutput,
                     .split(axis: 0, blocks: [c])),
                spec(p + "attn.c_proj.bias", [c], .bias, .zeros, .attentionOutputBias),
                spec(p + "ln_2.weight", [c], .norm, .ones, .mlpNorm),
                spec(p + "ln_2.bias", [c], .bias, .zeros, .mlpNormBias),
                spec(p + "mlp.c_fc.weight", [c, f], .matrix, .normal(std: std), .up, .split(axis: 1, blocks: [f])),
                spec(p + "mlp.c_fc.bias", [f], .bias, .zeros, .upBias, .split(axis: 0, blocks: [f])),
                spec(p + "mlp.c_proj.weight", [f, c], .matrix, .normal(std: config.residualStd), .down,
                     .split(axis: 0, blocks: [f])),
                spec(p + "mlp.c_proj.bias", [c], .bias, .zeros, .downBias),
            ]
        case .head:
            return [spec("transformer.ln_f.weight", [c], .norm, .ones, .finalNorm),
                    spec("transformer.ln_f.bias", [c], .bias, .zeros, .finalNormBias)]
        }
    }

    public static func huggingFaceConfig(_ config: ModelConfig) -> [String: Any] {
        [
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "n_positions": config.maxLength, "n_ctx": config.maxLength, "n_embd": config.width,
            "n_layer": config.layers, "n_head": config.heads, "n_inner": config.hiddenWidth,
            "activation_function": "gelu_new", "layer_norm_epsilon": Double("\(config.normEpsilon)") ?? Double(config.normEpsilon),
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": true,
            "scale_attn_weights": true,
        ]
    }
}

import Foundation
import KeelCore
import KeelModel

/// Writes a model as a Hugging Face `transformers` directory: `config.json` and `model.safetensors`,
/// loadable with `AutoModelForCausalLM.from_pretrained(directory)` (GPT2LMHeadModel or LlamaForCausalLM).
public enum HuggingFaceExport {
    /// Exports `model` into `directory` (created if needed); `endOfText` becomes the BOS/EOS token id.
    public static func write(_ model: Transformer, to directory: URL, endOfText: Int) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let options: JSONSerialization.WritingOptions = [.prettyPrinted, .sortedKeys]
        let json = try JSONSerialization.data(withJSONObject: config(for: model.config, endOfText: endOfText), options: options)
        try AtomicFile.write(json, to: directory.appendingPathComponent("config.json"))
        try ModelFiles.writeWeights(of: model, to: directory.appendingPathComponent("model.safetensors"))
    }

    /// The `config.json` contents for `config`.
    public static func config(for config: ModelConfig, endOfText: Int) -> [String: Any] {
        let common: [String: Any] = [
            "vocab_size": config.vocabSize, "bos_token_id": endOfText, "eos_token_id": endOfText,
            "torch_dtype": "float32", "use_cache": true,
        ]
        switch config.architecture {
        case .gpt2:
            return common.merging([
                "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                "n_positions": config.maxLength, "n_ctx": config.maxLength, "n_embd": config.width,
                "n_layer": config.layers, "n_head": config.heads, "n_inner": config.hiddenWidth,
                "activation_function": "gelu_new", "layer_norm_epsilon": Double("\(config.normEpsilon)") ?? Double(config.normEpsilon),
                "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": true,
                "scale_attn_weights": true,
            ]) { $1 }
        case .llama:
            return common.merging([
                "architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "hidden_size": config.width, "intermediate_size": config.hiddenWidth,
                "num_hidden_layers": config.layers, "num_attention_heads": config.heads,
                "num_key_value_heads": config.kvHeads, "head_dim": config.headDim,
                "max_position_embeddings": config.maxLength, "rms_norm_eps": Double("\(config.normEpsilon)") ?? Double(config.normEpsilon),
                "rope_theta": config.ropeTheta, "hidden_act": "silu", "tie_word_embeddings": false,
                "attention_bias": false, "mlp_bias": false, "initializer_range": 0.02,
            ]) { $1 }
        }
    }
}

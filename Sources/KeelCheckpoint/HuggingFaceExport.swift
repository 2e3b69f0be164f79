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
        return common.merging(config.architecture.family.huggingFaceConfig(config)) { $1 }
    }
}

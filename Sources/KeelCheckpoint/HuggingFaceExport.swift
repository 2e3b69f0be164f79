import Foundation
import KeelCore
import KeelModel

/// Writes a model as a Hugging Face `transformers` directory: `config.json` and `model.safetensors`,
/// loadable with `AutoModelForCausalLM.from_pretrained(directory)` (GPT2LMHeadModel or LlamaForCausalLM).
public enum HuggingFaceExport {
    /// Exports `model` into `directory` (created if needed); `endOfText` becomes the BOS/EOS token id. Both files
    /// are written before either replaces an older one: a failure leaves the directory's model as it was, not a new
    /// config beside old weights (which may still load, with the wrong settings).
    public static func write(_ model: Transformer, to directory: URL, endOfText: Int, beginningOfText: Int? = nil) throws {
        try AtomicFile.createDirectory(directory)
        let options: JSONSerialization.WritingOptions = [.prettyPrinted, .sortedKeys]
        let json = try JSONSerialization.data(withJSONObject: config(for: model.config, endOfText: endOfText, beginningOfText: beginningOfText), options: options)
        // The weights are renamed into place first: the config that says how to read them follows them.
        try AtomicFile.writeAll([directory.appendingPathComponent(ModelFiles.weightsFile), directory.appendingPathComponent("config.json")]) {
            try ModelFiles.writeWeights(model.table, model.parameters, to: $0[0]!)
            try $0[1]!.write(contentsOf: json)
        }
    }

    /// The `config.json` contents for `config`: `bos_token_id` is `beginningOfText`, the token the model's texts
    /// start with (an imported Llama 3's `<|begin_of_text|>`), or else the end-of-text token, as GPT-2's config names it.
    public static func config(for config: ModelConfig, endOfText: Int, beginningOfText: Int? = nil) -> [String: Any] {
        let common: [String: Any] = [
            "vocab_size": config.vocabSize, "bos_token_id": beginningOfText ?? endOfText, "eos_token_id": endOfText,
            "torch_dtype": "float32", "use_cache": true,
        ]
        return common.merging(config.architecture.family.huggingFaceConfig(config)) { $1 }
    }
}

import Foundation
import KeelCore
import KeelModel

/// Writes a model as a Hugging Face `transformers` directory: `config.json` and `model.safetensors`,
/// loadable with `AutoModelForCausalLM.from_pretrained(directory)` (GPT2LMHeadModel or LlamaForCausalLM).
public enum HuggingFaceExport {
    /// The files `write` writes besides those it is given.
    public static let fileNames = [ModelFiles.weightsFile, "config.json"]

    /// Exports `model` into `directory` (created if needed) with `files` beside it (the tokenizer's), removing the
    /// files named `removing` (an earlier export's that this one does not write); `endOfText` becomes the BOS/EOS token
    /// id. All files are written before any replaces an older one: a failure leaves the directory's model as it was,
    /// not a new config beside old weights (which may still load, with the wrong settings), and a stop while they
    /// replace it leaves no config.
    public static func write(_ model: Transformer, to directory: URL, endOfText: Int, beginningOfText: Int? = nil,
                             besides files: [(name: String, contents: Data)] = [], removing: [String] = []) throws {
        try AtomicFile.createDirectory(directory)
        let options: JSONSerialization.WritingOptions = [.prettyPrinted, .sortedKeys]
        let json = try JSONSerialization.data(withJSONObject: config(for: model.config, endOfText: endOfText, beginningOfText: beginningOfText), options: options)
        // The config says how to read the others: the old one goes before they are renamed into place (with the files
        // not written again), the new one comes after them. A stop between leaves no config, which transformers
        // refuses, not one beside other weights or another model's chat template.
        let urls = ([ModelFiles.weightsFile] + files.map(\.name) + ["config.json"]).map { directory.appendingPathComponent($0) }
        try AtomicFile.writeAll(urls, removingFirst: (["config.json"] + removing).map { directory.appendingPathComponent($0) }) { handles in
            try ModelFiles.writeWeights(model.table, model.parameters, to: handles[0]!)
            for (index, file) in files.enumerated() { try handles[index + 1]!.write(contentsOf: file.contents) }
            try handles.last!!.write(contentsOf: json)
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

import Foundation
import KeelCore

/// The tokenizer files of a Hugging Face model directory, written by `keel export hf` beside the model so that
/// `AutoTokenizer.from_pretrained(DIR)` reads text as Keel does and `keel import hf DIR` needs no `--tokenizer`.
public enum HuggingFaceTokenizer {
    /// Every name `files` may give.
    public static let fileNames = ["tokenizer.json"] + TokenizerSettings.fileNames

    /// The files for `tokenizer`, read from `path` (a checkpoint's `tokenizer.json`, or "byte"), with the settings files
    /// kept beside it: its `tokenizer.json` byte for byte (for the byte tokenizer, a BPE file without merges whose ids
    /// are the bytes and whose 256 is `<|endoftext|>`), and its settings files as they are, but that a
    /// `tokenizer_config.json` naming no tokenizer class names `PreTrainedTokenizerFast`, which reads `tokenizer.json`
    /// as it is, where the model type's own class (transformers 4's `LlamaTokenizerFast`) would put its own
    /// beginning-of-text before every text. Where it keeps no `tokenizer_config.json`, one naming that class, with
    /// `endOfSequence` and `beginningOfText` (the end of sequence when nil, as GPT-2's config names them) and the
    /// context length. Nil for a tiktoken file, which has no merge list for a `tokenizer.json`.
    public static func files(for tokenizer: any TextTokenizer, at path: String, endOfSequence: Int32, beginningOfText: Int32?,
                             contextLength: Int) throws -> [(name: String, contents: Data)]? {
        var files: [(name: String, contents: Data)]
        if tokenizer is ByteTokenizer {
            let vocabulary = try BPEVocabulary(tokens: (0..<256).map { [UInt8($0)] }, merges: [],
                                               specialTokens: [BPEVocabulary.endOfTextText: tokenizer.endOfText], pattern: .gpt2)
            files = [("tokenizer.json", try TokenizerFiles.huggingFaceJSON(vocabulary))]
        } else if URL(fileURLWithPath: path).pathExtension == "tiktoken" {
            return nil
        } else {
            files = [("tokenizer.json", try Data(contentsOf: URL(fileURLWithPath: path)))]
            files += try TokenizerSettings.files(in: URL(fileURLWithPath: path).deletingLastPathComponent())
        }
        if let index = files.firstIndex(where: { $0.name == "tokenizer_config.json" }) {
            // One that names no class (a GGUF import's) gets PreTrainedTokenizerFast's, for the reason above.
            if var config = try? JSONSerialization.jsonObject(with: files[index].contents) as? [String: Any], config["tokenizer_class"] == nil {
                config["tokenizer_class"] = "PreTrainedTokenizerFast"
                files[index].contents = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
            }
        } else {
            let spelling = { (id: Int32) in tokenizer is ByteTokenizer ? BPEVocabulary.endOfTextText : try tokenizer.decodeText([id]) }
            let config: [String: Any] = [
                "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": try spelling(endOfSequence),
                "bos_token": try spelling(beginningOfText ?? endOfSequence), "model_max_length": contextLength,
                "clean_up_tokenization_spaces": false,
            ]
            files.append(("tokenizer_config.json", try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])))
        }
        return files
    }
}

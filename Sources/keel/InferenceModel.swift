import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelInference
import KeelKernels
import KeelModel
import KeelTrain

/// What `generate`, `serve` and `eval` run: a Keel checkpoint (its projections optionally quantized at load), or a
/// llama.cpp GGUF file as it is — its quantized matrices computed on directly, never expanded to fp32.
struct InferenceModel {
    let decoder: Decoder
    /// The model's fp32 tensors (for a GGUF file, only those not kept quantized).
    let model: Transformer
    let tokenizer: any TextTokenizer
    /// What was loaded, for messages.
    let origin: String
    let isGGUF: Bool
    /// The text of the model's end-of-sequence token, when the model declares one (a GGUF file's
    /// `tokenizer.ggml.eos_token_id`, an import's `tokenizer_config.json`).
    let endOfSequence: String?
    /// Where a plain continuation stops (`generate`, `serve`'s completions): the end-of-sequence token's text, and
    /// the end-of-turn markers among the model's special tokens (`<|im_end|>`, `<|eot_id|>`, … KeelData's `EndOfTurn`),
    /// which llama.cpp also ends generation at, whichever token a file names as its end of sequence: an instruct
    /// model's continuation then stops where llama.cpp's does. Empty when the model declares no end of sequence (a
    /// model trained here). An approximation of llama.cpp's rule, which also applies to tokens not marked special
    /// and to files without an end of sequence, and leaves `<|end|>` out for gpt-oss's vocabulary.
    var endOfGeneration: [String] {
        guard let endOfSequence else { return [] }
        return [endOfSequence] + EndOfTurn.tokens(in: tokenizer).map(\.text).filter { $0 != endOfSequence }
    }
    /// What ends a text, for `generate` and `serve` alike: the `requested` stop strings, the model's end-of-sequence and
    /// end-of-turn tokens (`endOfGeneration`), and with `chat` the end of its turn (a template's turn end, <|eot_id|>,
    /// need not be the token the model names as its end of sequence); each once, none empty.
    static func stops(_ requested: [String], endOfGeneration: [String], chat: ChatFormat?) -> [String] {
        var seen = Set<String>()
        // Not an empty one: a file may spell its end-of-sequence token as nothing.
        return (requested + endOfGeneration + (chat?.stops ?? [])).filter { !$0.isEmpty && seen.insert($0).inserted }
    }

    /// How chats become prompts for this model.
    let chat: ChatFormat
    /// The token the model expects before every text, when it asks for one (`tokenizer.ggml.add_bos_token`, or a
    /// checkpoint's `TokenizerSettings.beginningOfTextToken(in:)`: Llama 3's `<|begin_of_text|>`).
    let beginningOfText: Int32?

    /// The token a chat prompt is put after when the chat template has not written it: the beginning-of-text token of
    /// a GGUF file that asks for one (llama.cpp's way), none for a checkpoint, whose conversations are trained with
    /// only what the template writes, as Hugging Face's `apply_chat_template` renders them.
    var chatStart: Int32? { isGGUF ? beginningOfText : nil }

    /// `tokens` as the model reads a text, or with `chat` a rendered conversation: after `beginningOfText`, or
    /// `chatStart`, when there is one.
    func prompt(_ tokens: [Int32], chat: Bool = false) -> [Int32] {
        Self.prompt(tokens, beginningOfText: chat ? chatStart : beginningOfText, endOfText: tokenizer.endOfText)
    }

    /// `tokens` after `beginningOfText` (when given), unless they start with it already (a chat template that
    /// writes `bos_token` itself). An empty prompt without one is the end-of-text token, which every document was
    /// read after in training (GPT-2's samples without a prompt start there too; token 0 was a byte, or "!").
    static func prompt(_ tokens: [Int32], beginningOfText: Int32?, endOfText: Int32) -> [Int32] {
        guard let beginningOfText, tokens.first != beginningOfText else { return tokens.isEmpty ? [endOfText] : tokens }
        return [beginningOfText] + tokens
    }

    /// Loads `path`: a `.gguf` file, or a run or checkpoint directory. `quantize` applies to checkpoints only;
    /// `keepingFloatWeights` keeps a quantized checkpoint's fp32 projections (to compare against them); `attention`
    /// is "f16" (llama.cpp's precision), "f32", or nil for f16 with a GGUF file and f32 with a checkpoint.
    static func load(_ path: String, quantize: QuantizationFormat?, keepingFloatWeights: Bool = false,
                     attention: String? = nil) throws -> InferenceModel {
        let loaded = try load(path, quantize: quantize, keepingFloatWeights: keepingFloatWeights)
        loaded.decoder.halfPrecisionAttention = (attention ?? (loaded.isGGUF ? "f16" : "f32")) == "f16"
        return loaded
    }

    /// The file `keel quantize` writes into its directory.
    static let quantizedFileName = "model.gguf"

    /// Whether `path` names a GGUF file, or a directory `keel quantize` wrote.
    static func isGGUF(_ path: String) -> Bool {
        path.lowercased().hasSuffix(".gguf")
            || FileManager.default.fileExists(atPath: URL(fileURLWithPath: path).appendingPathComponent(quantizedFileName).path)
    }

    private static func load(_ path: String, quantize: QuantizationFormat?, keepingFloatWeights: Bool) throws -> InferenceModel {
        // A directory `keel quantize` wrote runs its file.
        let quantized = URL(fileURLWithPath: path).appendingPathComponent(quantizedFileName).path
        if FileManager.default.fileExists(atPath: quantized) { return try load(quantized, quantize: quantize, keepingFloatWeights: keepingFloatWeights) }
        var isDirectory: ObjCBool = false
        if path.lowercased().hasSuffix(".gguf"), FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory),
           !isDirectory.boolValue {
            if let quantize {
                throw KeelError("--quantize \(quantize.rawValue): \(path) is a GGUF file, which runs in its own formats; import it (keel import gguf) to quantize it otherwise")
            }
            let file = try GGUFFile(contentsOf: URL(fileURLWithPath: path))
            let description = try GGUFImport.describe(file, path: path)
            let tokenizer = try description.textTokenizer()
            let (model, quantized) = try GGUFImport.quantizedModel(of: file, config: description.config, path: path)
            let endOfSequence = description.spelling(of: description.endOfSequence)
            return InferenceModel(decoder: try Decoder(model: model, quantizedTensors: quantized), model: model,
                                  tokenizer: tokenizer, origin: path, isGGUF: true, endOfSequence: endOfSequence,
                                  chat: ChatFormat(template: description.chatTemplate,
                                                   beginningOfSequence: description.spelling(of: description.beginningOfText),
                                                   endOfSequence: endOfSequence),
                                  beginningOfText: description.textStart.flatMap { Int32(exactly: $0) })
        }
        let checkpoint = try CheckpointReader(resolving: path)
        let model = try checkpoint.loadModel()
        let settings = TokenizerSettings(directory: checkpoint.directory)
        let tokenizer = try loadCheckpointTokenizer(checkpoint)
        return InferenceModel(decoder: try Decoder(model: model, quantization: quantize, releasingFloatWeights: !keepingFloatWeights),
                              model: model, tokenizer: tokenizer,
                              origin: checkpoint.directory.path, isGGUF: false, endOfSequence: settings.endOfSequence,
                              chat: ChatFormat(template: settings.chatTemplate, beginningOfSequence: settings.beginningOfText,
                                               endOfSequence: settings.endOfSequence),
                              beginningOfText: settings.beginningOfTextToken(in: tokenizer))
    }
}

/// The `--attention` option of the commands that run a model.
struct AttentionOption: ParsableArguments {
    @Option(help: ArgumentHelp("Attention precision: f16 (queries, keys and values rounded to fp16, as llama.cpp computes) or f32 (default: f16 for a .gguf file, f32 for a checkpoint).", valueName: "f16|f32"))
    var attention: String?

    func validate() throws {
        if let attention, !["f16", "f32"].contains(attention) { throw ValidationError("--attention must be f16 or f32 (got \(attention))") }
    }
}

extension GGUFImport.Description {
    /// The file's tokenizer as Keel's (KeelData's `GGUFVocabulary` of its lists).
    func textTokenizer() throws -> any TextTokenizer {
        try GGUFVocabulary(tokens: tokenizer.tokens, types: tokenizer.types, merges: tokenizer.merges,
                           preTokenizer: tokenizer.preTokenizer, endOfText: tokenizer.endOfText).tokenizer()
    }

    /// The text of token `id` (the end-of-sequence token, say), when the file lists it.
    func spelling(of id: Int?) -> String? {
        id.flatMap { tokenizer.tokens.indices.contains($0) ? tokenizer.tokens[$0] : nil }
    }
}

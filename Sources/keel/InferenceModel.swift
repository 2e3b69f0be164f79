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

    /// Loads `path`: a `.gguf` file, or a run or checkpoint directory. `quantize` applies to checkpoints only;
    /// `keepingFloatWeights` keeps a quantized checkpoint's fp32 projections (to compare against them).
    static func load(_ path: String, quantize: QuantizationFormat?, keepingFloatWeights: Bool = false) throws -> InferenceModel {
        var isDirectory: ObjCBool = false
        if path.lowercased().hasSuffix(".gguf"), FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory),
           !isDirectory.boolValue {
            if let quantize {
                throw KeelError("--quantize \(quantize.rawValue): \(path) is a GGUF file, which runs in its own formats; import it (keel import gguf) to quantize it otherwise")
            }
            let file = try GGUFFile(contentsOf: URL(fileURLWithPath: path))
            let description = try GGUFImport.describe(file, path: path)
            let lists = description.tokenizer
            let tokenizer = try GGUFVocabulary(tokens: lists.tokens, types: lists.types, merges: lists.merges,
                                               preTokenizer: lists.preTokenizer, endOfText: lists.endOfText).tokenizer()
            let (model, quantized) = try GGUFImport.quantizedModel(of: file, config: description.config, path: path)
            return InferenceModel(decoder: try Decoder(model: model, quantizedTensors: quantized), model: model,
                                  tokenizer: tokenizer, origin: path, isGGUF: true)
        }
        let checkpoint = try CheckpointReader(resolving: path)
        let model = try checkpoint.loadModel()
        return InferenceModel(decoder: try Decoder(model: model, quantization: quantize, releasingFloatWeights: !keepingFloatWeights),
                              model: model, tokenizer: try loadCheckpointTokenizer(checkpoint),
                              origin: checkpoint.directory.path, isGGUF: false)
    }
}

import Foundation
import KeelCore
import KeelModel

/// A Hugging Face `transformers` directory of a GPT-2 (`GPT2LMHeadModel`) or Llama (`LlamaForCausalLM`) model read
/// into a Keel model: the shape from `config.json` (refusing what Keel's families do not compute: another
/// activation, biases on Llama's projections, scaled RoPE, …), the weights from `model.safetensors` or the shards a
/// `model.safetensors.index.json` lists, in F32, F16, BF16 or F64. Keel's tensors carry the Hugging Face names, so
/// every weight is read by its own name; a tied head (`tie_word_embeddings`) is the token table.
public enum HuggingFaceImport {
    /// The model shape `config.json` (at `path`, named in errors) describes.
    public static func config(_ json: [String: Any], path: String) throws -> ModelConfig {
        func fail(_ message: String) -> KeelError { KeelError("\(path): \(message)") }
        func integer(_ key: String, _ fallback: Int? = nil) throws -> Int {
            if let value = json[key] as? Int, !isJSONBoolean(json[key]!), value > 0 { return value }
            if json[key] == nil || json[key] is NSNull, let fallback { return fallback }
            throw fail("\(key) must be a positive integer (got \(json[key].map { "\($0)" } ?? "nothing"))")
        }
        /// `fields[key]` (the config's own by default; `prefix` names a nested object in the message), or `fallback`.
        func number(_ key: String, _ fallback: Double, in fields: [String: Any]? = nil, prefix: String = "") throws -> Double {
            guard let value = (fields ?? json)[key], !(value is NSNull) else { return fallback }
            guard let number = (value as? NSNumber)?.doubleValue, !isJSONBoolean(value), number > 0, number.isFinite else {
                throw fail("\(prefix)\(key) must be a positive number (got \(value))")
            }
            return number
        }
        func require(_ key: String, _ allowed: [String], fallback: String) throws {
            let value = json[key] as? String ?? fallback
            guard allowed.contains(value) else {
                throw fail("\(key) is \"\(value)\"; Keel's \(json["model_type"] ?? "") computes \(allowed.map { "\"\($0)\"" }.joined(separator: " or ")) only")
            }
        }
        // Foundation reads JSON's 0 and 1 as Bool too, which here is right: transformers takes them as falsy and truthy.
        func flag(_ key: String, _ fallback: Bool) -> Bool { json[key] as? Bool ?? fallback }
        let modelType = json["model_type"] as? String ?? "(none)"
        let config: ModelConfig
        switch modelType {
        case "gpt2":
            try require("activation_function", ["gelu_new", "gelu_pytorch_tanh"], fallback: "gelu_new")
            guard flag("scale_attn_weights", true), !flag("scale_attn_by_inverse_layer_idx", false), !flag("add_cross_attention", false) else {
                throw fail("attention scaled other than by 1/sqrt(head width), or cross-attention: not GPT-2 as Keel computes it")
            }
            guard flag("tie_word_embeddings", true) else { throw fail("tie_word_embeddings is false; Keel's GPT-2 ties its head") }
            let width = try integer("n_embd")
            config = ModelConfig(
                architecture: .gpt2, vocabSize: try integer("vocab_size"), layers: try integer("n_layer"),
                heads: try integer("n_head"), width: width, hiddenWidth: try integer("n_inner", 4 * width),
                maxLength: try integer("n_positions"), normEpsilon: Float(try number("layer_norm_epsilon", 1e-5)))
        case "llama":
            try require("hidden_act", ["silu"], fallback: "silu")
            guard !flag("attention_bias", false), !flag("mlp_bias", false) else {
                throw fail("attention_bias or mlp_bias is true; Keel's Llama has no biases")
            }
            // transformers 5 writes rope_parameters; 4 wrote rope_theta and rope_scaling.
            let rope = json["rope_parameters"] as? [String: Any] ?? [:]
            let scaling = json["rope_scaling"] as? [String: Any] ?? rope
            let ropeType = scaling["rope_type"] as? String ?? scaling["type"] as? String ?? "default"
            guard ropeType == "default" else { throw fail("RoPE is scaled (\(ropeType)), which Keel does not implement") }
            let theta = rope["rope_theta"] == nil
                ? try number("rope_theta", 10_000) : try number("rope_theta", 10_000, in: rope, prefix: "rope_parameters.")
            let width = try integer("hidden_size"), heads = try integer("num_attention_heads")
            if let value = json["head_dim"], !isJSONBoolean(value), let headDim = value as? Int, headDim * heads != width {
                throw fail("head_dim \(headDim) × \(heads) heads is not hidden_size \(width); Keel's Llama has heads of hidden_size / heads")
            }
            config = ModelConfig(
                architecture: .llama, vocabSize: try integer("vocab_size"), layers: try integer("num_hidden_layers"),
                heads: heads, kvHeads: try integer("num_key_value_heads", heads), width: width,
                hiddenWidth: try integer("intermediate_size"), maxLength: try integer("max_position_embeddings"),
                normEpsilon: Float(try number("rms_norm_eps", 1e-6)), ropeTheta: theta,
                tiedEmbeddings: flag("tie_word_embeddings", false))
        default:
            throw fail("model_type is \"\(modelType)\"; Keel imports \"gpt2\" and \"llama\" models")
        }
        do { try config.validate() } catch { throw fail("\(error)") }
        return config
    }

    /// Tensors a checkpoint may hold that are not weights: buffers older `transformers` versions saved.
    private static func isBuffer(_ name: String) -> Bool {
        name.hasSuffix(".attn.bias") && name.hasPrefix("transformer.h.") || name.hasSuffix(".attn.masked_bias")
            || name.hasSuffix(".rotary_emb.inv_freq")
    }

    /// A stored tensor's name as `GPT2LMHeadModel` knows it: the Hub's GPT-2 files (openai-community/gpt2,
    /// distilgpt2, …) hold the base model's names without `transformer.` (`wte.weight`, `h.0.attn.c_attn.weight`),
    /// which `transformers` prefixes when it loads them, and so does this.
    private static func keelName(_ stored: String, _ config: ModelConfig) -> String {
        guard config.architecture == .gpt2, !stored.hasPrefix("transformer."), stored != "lm_head.weight" else { return stored }
        return "transformer." + stored
    }

    /// The model of `directory` with `config`: every tensor read from the file that holds it, converted to fp32;
    /// a missing tensor, a wrong shape or a tensor Keel has no place for is an error (a tied model's `lm_head.weight`,
    /// when saved, must equal the token table).
    public static func model(directory: URL, config: ModelConfig) throws -> Transformer {
        // Keel's name → (the file, the name stored there).
        var files: [String: (file: String, stored: String)] = [:]
        for (stored, file) in try weightFiles(directory) {
            let name = keelName(stored, config)
            guard files[name] == nil else {
                throw KeelError("\(directory.path): tensor \(name) is stored twice (as \(files[name]!.stored) and \(stored))")
            }
            files[name] = (file, stored)
        }
        var opened: [String: SafetensorsFile] = [:]
        func file(_ name: String) throws -> SafetensorsFile {
            if let file = opened[name] { return file }
            let file = try SafetensorsFile(url: directory.appendingPathComponent(name))
            opened[name] = file
            return file
        }
        // Every tensor the config asks for, there and of its shape, before the model is allocated: config.json alone
        // sizes it, and a few bytes of it could ask for terabytes that no file backs.
        for entry in ParameterTable(config: config).entries {
            guard let holder = files[entry.name] else {
                throw KeelError("\(directory.path): no tensor \(entry.name) in the model's safetensors files")
            }
            let stored = try file(holder.file).entry(holder.stored)
            guard stored.shape == entry.shape else {
                throw KeelError("\(directory.appendingPathComponent(holder.file).path): tensor '\(holder.stored)' has shape \(stored.shape), expected \(entry.shape)")
            }
        }
        let model = try Transformer(config: config, seed: 0, initialized: false)
        for entry in model.table.entries {
            let holder = files[entry.name]!
            try file(holder.file).convertFloats(holder.stored, shape: entry.shape, to: model.parameters.pointer + entry.offset)
            if !UnsafeBufferPointer(start: model.parameters.pointer + entry.offset, count: entry.count).allSatisfy(\.isFinite) {
                throw KeelError("\(directory.path): tensor \(entry.name) holds NaN or infinite values")
            }
        }
        let known = Set(model.table.entries.map(\.name))
        for name in files.keys.sorted() where !known.contains(name) && !isBuffer(name) {
            // transformers saves a tied head only when told to; it must then be the token table.
            if config.tiedEmbeddings, name == "lm_head.weight", let table = model.table.entries.first(where: { $0.slot == .tokenTable }) {
                var head = [Float](repeating: 0, count: table.count)
                try file(files[name]!.file).convertFloats(files[name]!.stored, shape: table.shape, to: &head)
                guard head.elementsEqual(UnsafeBufferPointer(start: model.parameters.pointer + table.offset, count: table.count)) else {
                    throw KeelError("\(directory.path): tie_word_embeddings is true but lm_head.weight differs from \(table.name)")
                }
                continue
            }
            throw KeelError("\(directory.path): tensor \(files[name]!.stored) has no place in Keel's \(config.architecture.rawValue)")
        }
        return model
    }

    /// Which file holds each tensor: every tensor of `model.safetensors`, or the index's weight map — in that
    /// order, as `from_pretrained` looks for them (a directory exported into over an older sharded download holds
    /// both, and the single file is the new one).
    private static func weightFiles(_ directory: URL) throws -> [String: String] {
        let single = directory.appendingPathComponent(ModelFiles.weightsFile)
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        if FileManager.default.fileExists(atPath: single.path) {
            return Dictionary(uniqueKeysWithValues: try SafetensorsFile(url: single).entries.keys.map { ($0, ModelFiles.weightsFile) })
        }
        if FileManager.default.fileExists(atPath: index.path) {
            guard let data = try? Data(contentsOf: index),
                  let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let map = root["weight_map"] as? [String: String]
            else { throw KeelError("\(index.path): not a safetensors index (no weight_map of names to files)") }
            for file in Set(map.values) where file.contains("/") || file.hasPrefix(".") {
                throw KeelError("\(index.path): weight file \(file) is not a file of the directory")
            }
            return map
        }
        let hasBin = FileManager.default.fileExists(atPath: directory.appendingPathComponent("pytorch_model.bin").path)
        throw KeelError("\(directory.path): no model.safetensors or model.safetensors.index.json"
                        + (hasBin ? " (only pytorch_model.bin, a pickle Keel does not read: save it with safe_serialization=True)" : ""))
    }
}

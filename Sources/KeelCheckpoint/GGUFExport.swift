import Foundation
import KeelCore
import KeelKernels
import KeelModel

/// A Llama model as the GGUF file llama.cpp loads: its shape as `llama.*` metadata, its tokenizer, and its tensors
/// under llama.cpp's names (`token_embd`, `blk.N.attn_q`, …) in a chosen type, the norms in F32.
///
/// The q and k projections' rows are permuted as llama.cpp's converter permutes them: Keel (like Hugging Face)
/// rotates dimension i of a head with dimension i + d/2, llama.cpp rotates adjacent pairs, so row j of a head goes
/// to row 2j and row j + d/2 to row 2j + 1.
public enum GGUFExport {
    /// The type of the projections' and embeddings' tensors.
    public enum WeightType: String, CaseIterable, Sendable {
        case f32, f16, q8_0, q4_0, q4_1, q4_k

        /// ggml's type number.
        var ggmlType: Int {
            switch self {
            case .f32: 0
            case .f16: 1
            case .q8_0, .q4_0, .q4_1, .q4_k: format!.ggmlType
            }
        }

        var format: QuantizationFormat? { QuantizationFormat(rawValue: rawValue) }

        /// Whether the weights are in one of llama.cpp's block formats.
        public var isQuantized: Bool { format != nil }

        /// `general.file_type` (llama.cpp's LlamaFileType; a file of one type throughout).
        var fileType: UInt32 {
            switch self {
            case .f32: 0
            case .f16: 1
            case .q4_0: 2
            case .q4_1: 3
            case .q8_0: 7
            case .q4_k: 14 // MOSTLY_Q4_K_S: Q4_K everywhere
            }
        }
    }

    /// The tokenizer's part of the file (built from a Keel tokenizer by KeelData's GGUFVocabulary).
    public struct Tokenizer: Sendable {
        public let tokens: [String]
        public let types: [Int32]
        public let merges: [String]
        public let preTokenizer: String
        public let endOfText: Int

        public init(tokens: [String], types: [Int32], merges: [String], preTokenizer: String, endOfText: Int) {
            self.tokens = tokens
            self.types = types
            self.merges = merges
            self.preTokenizer = preTokenizer
            self.endOfText = endOfText
        }
    }

    /// The GGUF file of `model` (a whole Llama model) with its weights in `type`.
    public static func file(for model: Transformer, type: WeightType, tokenizer: Tokenizer) throws -> GGUFFile {
        let config = model.config
        guard config.architecture == .llama else {
            throw KeelError("GGUF export writes Llama models; this one is \(config.architecture.rawValue)")
        }
        guard model.isFirstStage && model.isLastStage else { throw KeelError("GGUF export needs the whole model") }
        guard tokenizer.tokens.count == config.vocabSize else {
            throw KeelError("the tokenizer lists \(tokenizer.tokens.count) tokens for a vocabulary of \(config.vocabSize)")
        }
        var file = GGUFFile()
        file.metadata = [
            ("general.architecture", .string("llama")), ("general.name", .string("keel")),
            ("general.file_type", .uint32(type.fileType)), ("general.quantization_version", .uint32(2)),
            ("llama.context_length", .uint32(UInt32(config.maxLength))),
            ("llama.embedding_length", .uint32(UInt32(config.width))),
            ("llama.block_count", .uint32(UInt32(config.layers))),
            ("llama.feed_forward_length", .uint32(UInt32(config.hiddenWidth))),
            ("llama.attention.head_count", .uint32(UInt32(config.heads))),
            ("llama.attention.head_count_kv", .uint32(UInt32(config.kvHeads))),
            ("llama.attention.layer_norm_rms_epsilon", .float32(config.normEpsilon)),
            ("llama.rope.freq_base", .float32(Float(config.ropeTheta))),
            ("llama.rope.dimension_count", .uint32(UInt32(config.headDim))),
            ("llama.vocab_size", .uint32(UInt32(config.vocabSize))),
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(tokenizer.preTokenizer)),
            ("tokenizer.ggml.tokens", .array(.string, tokenizer.tokens.map(GGUFValue.string))),
            ("tokenizer.ggml.token_type", .array(.int32, tokenizer.types.map(GGUFValue.int32))),
            ("tokenizer.ggml.merges", .array(.string, tokenizer.merges.map(GGUFValue.string))),
            ("tokenizer.ggml.bos_token_id", .uint32(UInt32(tokenizer.endOfText))),
            ("tokenizer.ggml.eos_token_id", .uint32(UInt32(tokenizer.endOfText))),
            ("tokenizer.ggml.add_bos_token", .bool(false)),
        ]
        for entry in model.table.entries {
            guard let ggufName = llamaCppName(of: entry.name) else { throw KeelError("GGUF export: no llama.cpp name for \(entry.name)") }
            var values = Array(UnsafeBufferPointer(start: model.parameters.pointer + entry.offset, count: entry.count))
            if let heads = rotatedHeads(entry.name, config) {
                values = permutedForLlamaCpp(values, heads: heads, headDim: config.headDim, rowLength: entry.shape[1])
            }
            // GGUF lists dimensions innermost first: a [rows, columns] matrix is [columns, rows].
            let dimensions = Array(entry.shape.reversed())
            let tensorType = entry.shape.count == 1 ? .f32 : type
            try file.append(name: ggufName, type: tensorType.ggmlType, dimensions: dimensions,
                            bytes: try encode(values, rows: entry.shape.count == 1 ? 1 : entry.shape[0], as: tensorType, tensor: ggufName))
        }
        return file
    }

    /// llama.cpp's names of Llama's tensors, by their Hugging Face names (within a block, after `model.layers.N.`).
    static let llamaCppNames: [String: String] = [
        "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight", "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
    ]

    /// The llama.cpp name of the Hugging Face tensor `name` (`model.layers.3.self_attn.q_proj.weight` →
    /// `blk.3.attn_q.weight`), or nil for a tensor llama.cpp's Llama has not.
    static func llamaCppName(of name: String) -> String? {
        guard name.hasPrefix("model.layers.") else { return llamaCppNames[name] }
        let parts = name.split(separator: ".", maxSplits: 3)
        guard parts.count == 4, let layer = Int(parts[2]), let mapped = llamaCppNames[String(parts[3])] else { return nil }
        return "blk.\(layer)." + mapped
    }

    /// The heads of the rows RoPE rotates in tensor `name` (q: query heads, k: key/value heads), else nil.
    static func rotatedHeads(_ name: String, _ config: ModelConfig) -> Int? {
        if name.hasSuffix(".self_attn.q_proj.weight") { return config.heads }
        if name.hasSuffix(".self_attn.k_proj.weight") { return config.kvHeads }
        return nil
    }

    /// `values` (rows of `heads` × `headDim` output features, `rowLength` elements each: floats, or a quantized
    /// row's bytes) with each head's rows j and j + d/2 made adjacent (rows 2j and 2j + 1), as llama.cpp's converter
    /// orders them; with `inverse`, back again.
    static func permutedForLlamaCpp<Element>(_ values: [Element], heads: Int, headDim: Int, rowLength: Int,
                                             inverse: Bool = false) -> [Element] {
        var permuted = values
        let half = headDim / 2
        for head in 0..<heads {
            for j in 0..<half {
                for (llamaCpp, keel) in [(2 * j, j), (2 * j + 1, j + half)] {
                    let (target, source) = inverse ? (keel, llamaCpp) : (llamaCpp, keel)
                    let to = (head * headDim + target) * rowLength, from = (head * headDim + source) * rowLength
                    permuted.replaceSubrange(to..<(to + rowLength), with: values[from..<(from + rowLength)])
                }
            }
        }
        return permuted
    }

    private static func encode(_ values: [Float], rows: Int, as type: WeightType, tensor: String) throws -> Data {
        switch type {
        case .f32: return values.withUnsafeBytes { Data($0) }
        case .f16: return values.map { Float16($0).bitPattern }.withUnsafeBytes { Data($0) }
        case .q8_0, .q4_0, .q4_1, .q4_k:
            do {
                return Data(try QuantizedMatrix(quantizing: values, rows: rows, columns: values.count / rows, format: type.format!).bytes)
            } catch {
                throw KeelError("GGUF export: \(tensor) in \(type.rawValue): \(error)")
            }
        }
    }
}

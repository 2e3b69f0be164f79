import Foundation
import KeelCore
import KeelKernels
import KeelModel

/// A Llama or GPT-2 model as the GGUF file llama.cpp loads: its shape as `llama.*` or `gpt2.*` metadata, its
/// tokenizer, and its tensors under llama.cpp's names (`token_embd`, `blk.N.attn_q`, `blk.N.attn_qkv`, …) in a chosen
/// type, the norms and biases in F32 — laid out as llama.cpp's `convert_hf_to_gguf.py` lays them out: rows of output
/// features (GPT-2's Conv1D weights transposed), GPT-2's tied head written out as `output.weight`.
///
/// The q and k projections' rows are permuted as llama.cpp's converter permutes them: Keel (like Hugging Face)
/// rotates dimension i of a head with dimension i + d/2, llama.cpp rotates adjacent pairs, so row j of a head goes
/// to row 2j and row j + d/2 to row 2j + 1.
public enum GGUFExport {
    /// The type of the projections' and embeddings' tensors.
    public enum WeightType: String, CaseIterable, Sendable {
        case f32, f16, q8_0, q4_0, q4_1, q5_0, q4_k

        /// ggml's type number.
        var ggmlType: Int {
            switch self {
            case .f32: 0
            case .f16: 1
            case .q8_0, .q4_0, .q4_1, .q5_0, .q4_k: format!.ggmlType
            }
        }

        var format: QuantizationFormat? { QuantizationFormat(rawValue: rawValue) }

        /// Whether Keel computes on the type as it is stored (f16 and the block formats; not f32).
        public var isQuantized: Bool { format != nil }

        /// `general.file_type` (llama.cpp's LlamaFileType: the type of most tensors; norms, biases and GPT-2's
        /// position table are F32, and beside a 4-bit type the head is Q8_0).
        var fileType: UInt32 {
            switch self {
            case .f32: 0
            case .f16: 1
            case .q4_0: 2
            case .q4_1: 3
            case .q8_0: 7
            case .q5_0: 8
            case .q4_k: 14 // MOSTLY_Q4_K_S: Q4_K but for the head (and Q5_0 where rows are not whole Q4_K blocks)
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
        /// The token every text starts with (`tokenizer.ggml.add_bos_token`, as its BOS), or nil for none.
        public let textStart: Int?
        /// The chat template (`tokenizer.chat_template`), or nil for none: without it llama.cpp, and Keel reading the
        /// file, would talk to an instruction-tuned model in ChatML, its fallback, whatever format it was tuned on.
        public let chatTemplate: String?

        public init(tokens: [String], types: [Int32], merges: [String], preTokenizer: String, endOfText: Int,
                    textStart: Int? = nil, chatTemplate: String? = nil) {
            self.chatTemplate = chatTemplate
            self.tokens = tokens
            self.types = types
            self.merges = merges
            self.preTokenizer = preTokenizer
            self.endOfText = endOfText
            self.textStart = textStart
        }
    }

    /// The GGUF file of `model` (a whole Llama or GPT-2 model) with its weights in `type`.
    public static func file(for model: Transformer, type: WeightType, tokenizer: Tokenizer) throws -> GGUFFile {
        let config = model.config
        guard model.isFirstStage && model.isLastStage else { throw KeelError("GGUF export needs the whole model") }
        guard tokenizer.tokens.count == config.vocabSize else {
            throw KeelError("the tokenizer lists \(tokenizer.tokens.count) tokens for a vocabulary of \(config.vocabSize)")
        }
        let arch = config.architecture.rawValue
        var file = GGUFFile()
        file.metadata = [
            ("general.architecture", .string(arch)), ("general.name", .string("keel")),
            ("general.file_type", .uint32(type.fileType)), ("general.quantization_version", .uint32(2)),
            ("\(arch).context_length", .uint32(UInt32(config.maxLength))),
            ("\(arch).embedding_length", .uint32(UInt32(config.width))),
            ("\(arch).block_count", .uint32(UInt32(config.layers))),
            ("\(arch).feed_forward_length", .uint32(UInt32(config.hiddenWidth))),
            ("\(arch).attention.head_count", .uint32(UInt32(config.heads))),
        ]
        switch config.architecture {
        case .llama:
            file.metadata += [
                ("llama.attention.head_count_kv", .uint32(UInt32(config.kvHeads))),
                ("llama.attention.layer_norm_rms_epsilon", .float32(config.normEpsilon)),
                ("llama.rope.freq_base", .float32(Float(config.ropeTheta))),
                ("llama.rope.dimension_count", .uint32(UInt32(config.headDim))),
            ]
        case .gpt2:
            file.metadata += [("gpt2.attention.layer_norm_epsilon", .float32(config.normEpsilon))]
        }
        file.metadata += [
            ("\(arch).vocab_size", .uint32(UInt32(config.vocabSize))),
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(tokenizer.preTokenizer)),
            ("tokenizer.ggml.tokens", .array(.string, tokenizer.tokens.map(GGUFValue.string))),
            ("tokenizer.ggml.token_type", .array(.int32, tokenizer.types.map(GGUFValue.int32))),
            ("tokenizer.ggml.merges", .array(.string, tokenizer.merges.map(GGUFValue.string))),
            ("tokenizer.ggml.bos_token_id", .uint32(UInt32(tokenizer.textStart ?? tokenizer.endOfText))),
            ("tokenizer.ggml.eos_token_id", .uint32(UInt32(tokenizer.endOfText))),
            ("tokenizer.ggml.add_bos_token", .bool(tokenizer.textStart != nil)),
        ]
        if let template = tokenizer.chatTemplate { file.metadata.append(("tokenizer.chat_template", .string(template))) }
        for entry in model.table.entries {
            guard let ggufName = llamaCppName(of: entry.name, config.architecture) else {
                throw KeelError("GGUF export: no llama.cpp name for \(entry.name)")
            }
            var values = Array(UnsafeBufferPointer(start: model.parameters.pointer + entry.offset, count: entry.count))
            if let heads = rotatedHeads(entry.name, config) {
                values = permutedForLlamaCpp(values, heads: heads, headDim: config.headDim, rowLength: entry.shape[1])
            }
            let (rows, columns) = rowsAndColumns(entry, config)
            if isTransposed(entry, config) { values = transposed(values, rows: columns, columns: rows) }
            let tensorType = keepsFloat32(entry) ? .f32 : isHead(entry, config) ? headType(type, columns: columns) : fitting(type, columns: columns)
            // GGUF lists dimensions innermost first: rows of `columns` values are [columns, rows].
            let dimensions = entry.shape.count == 1 ? entry.shape : [columns, rows]
            let bytes = try encode(values, rows: rows, as: tensorType, tensor: ggufName)
            try file.append(name: ggufName, type: tensorType.ggmlType, dimensions: dimensions, bytes: bytes)
            // llama.cpp's converter writes GPT-2's tied head out as its own tensor, a copy of the token table.
            if config.architecture == .gpt2, entry.slot == .tokenTable {
                try file.append(name: "output.weight", type: tensorType.ggmlType, dimensions: dimensions, bytes: bytes)
            }
        }
        return file
    }

    /// A tensor as GGUF holds it: rows of output features (GPT-2's Conv1D `[in, out]` weights transposed), a vector
    /// as one row.
    static func rowsAndColumns(_ entry: ParameterEntry, _ config: ModelConfig) -> (rows: Int, columns: Int) {
        if entry.shape.count == 1 { return (1, entry.shape[0]) }
        return isTransposed(entry, config) ? (entry.shape[1], entry.shape[0]) : (entry.shape[0], entry.shape[1])
    }

    /// Whether Keel stores the tensor `[in, out]` (GPT-2's projections), which GGUF holds as rows of outputs.
    static func isTransposed(_ entry: ParameterEntry, _ config: ModelConfig) -> Bool {
        config.architecture.family.weightLayout == .inputMajor && entry.role == .matrix
    }

    /// Norms, biases and GPT-2's position table stay F32 whatever the type (the position table is looked up, never
    /// multiplied).
    static func keepsFloat32(_ entry: ParameterEntry) -> Bool { entry.shape.count == 1 || entry.slot == .positionTable }

    /// Whether the tensor is the output head: the head's own, or a tied head's token table.
    static func isHead(_ entry: ParameterEntry, _ config: ModelConfig) -> Bool {
        entry.slot == .output || (config.tiedEmbeddings && entry.slot == .tokenTable)
    }

    /// The head's type when the rest is `type`: Q8_0 for the 4-bit formats (`QuantizationFormat.headFormat`).
    static func headType(_ type: WeightType, columns: Int) -> WeightType {
        guard let format = type.format else { return type }
        return WeightType(rawValue: format.headFormat(columns: columns).rawValue)!
    }

    /// The type of another matrix with rows of `columns` values: Q5_0 for Q4_K rows that are not whole blocks of 256
    /// (`QuantizationFormat.fitting`).
    static func fitting(_ type: WeightType, columns: Int) -> WeightType {
        guard let format = type.format else { return type }
        return WeightType(rawValue: format.fitting(columns: columns).rawValue)!
    }

    /// llama.cpp's names of each family's tensors, by their Hugging Face names (within a block, after the block's
    /// prefix `model.layers.N.` or `transformer.h.N.`).
    static let llamaCppNames: [Architecture: [String: String]] = [
        .llama: [
            "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
            "lm_head.weight": "output.weight", "input_layernorm.weight": "attn_norm.weight",
            "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
            "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
            "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
            "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
        ],
        .gpt2: [
            "transformer.wte.weight": "token_embd.weight", "transformer.wpe.weight": "position_embd.weight",
            "transformer.ln_f.weight": "output_norm.weight", "transformer.ln_f.bias": "output_norm.bias",
            "ln_1.weight": "attn_norm.weight", "ln_1.bias": "attn_norm.bias",
            "attn.c_attn.weight": "attn_qkv.weight", "attn.c_attn.bias": "attn_qkv.bias",
            "attn.c_proj.weight": "attn_output.weight", "attn.c_proj.bias": "attn_output.bias",
            "ln_2.weight": "ffn_norm.weight", "ln_2.bias": "ffn_norm.bias",
            "mlp.c_fc.weight": "ffn_up.weight", "mlp.c_fc.bias": "ffn_up.bias",
            "mlp.c_proj.weight": "ffn_down.weight", "mlp.c_proj.bias": "ffn_down.bias",
        ],
    ]

    /// The llama.cpp name of the Hugging Face tensor `name` of `architecture` (`model.layers.3.self_attn.q_proj.weight`
    /// → `blk.3.attn_q.weight`), or nil for a tensor llama.cpp's model has not.
    static func llamaCppName(of name: String, _ architecture: Architecture) -> String? {
        let names = llamaCppNames[architecture]!
        let prefix = architecture == .llama ? "model.layers." : "transformer.h."
        guard name.hasPrefix(prefix) else { return names[name] }
        let parts = name.dropFirst(prefix.count).split(separator: ".", maxSplits: 1)
        guard parts.count == 2, let layer = Int(parts[0]), let mapped = names[String(parts[1])] else { return nil }
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
        case .f16:
            var bits = [UInt16](), beyond: Float?
            bits.reserveCapacity(values.count)
            for value in values {
                // A magnitude of 65,520 or more rounds to infinity in half precision.
                let half = Float16(value)
                if !half.isFinite, value.isFinite, beyond == nil { beyond = value }
                bits.append(half.bitPattern)
            }
            if let beyond {
                throw KeelError("GGUF export: \(tensor) in f16: a value of \(beyond) is beyond half precision (65,504); export it as f32 or q8_0")
            }
            return bits.withUnsafeBytes { Data($0) }
        case .q8_0, .q4_0, .q4_1, .q5_0, .q4_k:
            do {
                return try QuantizedMatrix(quantizing: values, rows: rows, columns: values.count / rows, format: type.format!).data
            } catch {
                throw KeelError("GGUF export: \(tensor) in \(type.rawValue): \(error)")
            }
        }
    }
}

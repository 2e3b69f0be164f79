import Foundation
import KeelCore
import KeelKernels
import KeelModel

/// A llama.cpp GGUF file of a Llama-family or GPT-2 model read back into a Keel model: the shape from the `llama.*`
/// or `gpt2.*` metadata, every tensor dequantized to fp32 (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K,
/// Q6_K) with the q and k rows put
/// back in Hugging Face's order (`GGUFExport.permutedForLlamaCpp` inverted), the head tied to the token embedding
/// when the file has no `output.weight`, and the tokenizer's lists as the file holds them.
public enum GGUFImport {
    /// The pre-tokenizers (`tokenizer.ggml.pre`) under which llama.cpp starts every text with BOS when the file has
    /// no `tokenizer.ggml.add_bos_token` (its `llama-vocab.cpp`: Llama 3's, under three names).
    public static let preTokenizersAddingBOS: Set<String> = ["llama-bpe", "llama3", "llama-v3"]

    /// What a GGUF file says besides its weights.
    public struct Description: Sendable {
        public let config: ModelConfig
        /// The tokenizer's lists (`tokenizer.ggml.*`), for KeelData's `GGUFVocabulary`.
        public let tokenizer: GGUFExport.Tokenizer
        /// `tokenizer.ggml.bos_token_id` / `eos_token_id`, when given.
        public let beginningOfText: Int?
        public let endOfSequence: Int?
        /// `tokenizer.ggml.add_bos_token`: llama.cpp puts the BOS token before every text it scores or continues.
        /// When the file does not say, llama.cpp decides by the pre-tokenizer: Llama 3's (`preTokenizersAddingBOS`)
        /// start with BOS, Llama 3's files have no such key, and others do not.
        public let addsBeginningOfText: Bool
        /// The token every text starts with, as llama.cpp reads the file: BOS when it adds one, else none.
        public var textStart: Int? { addsBeginningOfText ? beginningOfText : nil }
        /// `tokenizer.chat_template` (Jinja), when given.
        public let chatTemplate: String?
        /// `general.name`, when given.
        public let name: String?
        /// How many tensors of each ggml type the file holds ("Q4_1": 210, …).
        public let tensorTypes: [String: Int]
    }

    /// Reads the description of `file` (at `path`, named in errors), checking that Keel can run the model.
    public static func describe(_ file: GGUFFile, path: String) throws -> Description {
        func fail(_ message: String) -> KeelError { KeelError("\(path): \(message)") }
        let name = file["general.architecture"]?.string ?? "(none)"
        guard let architecture = Architecture(rawValue: name) else {
            throw fail("general.architecture is \"\(name)\"; Keel imports Llama-family (\"llama\") and GPT-2 (\"gpt2\") models")
        }
        func integer(_ key: String) throws -> Int {
            guard let value = file[key]?.integer, value > 0 else { throw fail("missing or invalid \(key)") }
            return value
        }
        func number(_ key: String, _ fallback: Double) throws -> Double {
            guard let value = file[key] else { return fallback }
            guard let number = value.number ?? value.integer.map(Double.init), number > 0, number.isFinite else {
                throw fail("invalid \(key)")
            }
            return number
        }
        guard case .array(_, let tokenValues)? = file["tokenizer.ggml.tokens"] else {
            throw fail("no tokenizer.ggml.tokens: Keel needs the file's tokenizer")
        }
        guard file["tokenizer.ggml.model"]?.string == "gpt2" else {
            throw fail("tokenizer.ggml.model is \"\(file["tokenizer.ggml.model"]?.string ?? "(none)")\"; Keel reads byte-level BPE (\"gpt2\") tokenizers")
        }
        let tokens = tokenValues.compactMap(\.string)
        let types: [Int32]
        if case .array(_, let values)? = file["tokenizer.ggml.token_type"] {
            types = values.compactMap { $0.integer.flatMap { Int32(exactly: $0) } }
        } else {
            types = Array(repeating: 1, count: tokens.count)
        }
        var merges: [String] = []
        if case .array(_, let values)? = file["tokenizer.ggml.merges"] {
            merges = values.compactMap(\.string)
            // Merges of another type would be dropped silently, and the tokenizer encode otherwise.
            guard merges.count == values.count else { throw fail("tokenizer.ggml.merges must be a list of strings") }
        }
        guard tokens.count == tokenValues.count, types.count == tokens.count else {
            throw fail("tokenizer.ggml.tokens and token_type must be lists of \(tokenValues.count) strings and integers")
        }

        let arch = architecture.rawValue
        let width = try integer("\(arch).embedding_length"), heads = try integer("\(arch).attention.head_count")
        guard width % heads == 0 else { throw fail("\(arch).embedding_length (\(width)) is not a multiple of the \(heads) heads") }
        let headDim = width / heads
        if let keyLength = file["\(arch).attention.key_length"]?.integer, keyLength != headDim {
            throw fail("\(arch).attention.key_length is \(keyLength), not embedding_length / head_count (\(headDim)): Keel's models have no separate head width")
        }
        let hasOutput = file.tensors.contains { $0.name == "output.weight" }
        let config: ModelConfig
        switch architecture {
        case .llama:
            if let rotated = file["llama.rope.dimension_count"]?.integer, rotated != headDim {
                throw fail("llama.rope.dimension_count is \(rotated), not the head width \(headDim): Keel rotates whole heads")
            }
            if file["llama.rope.scaling.type"] != nil || file["llama.rope.scaling.factor"] != nil {
                throw fail("the model scales RoPE (llama.rope.scaling.*), which Keel does not implement")
            }
            config = ModelConfig(
                architecture: .llama, vocabSize: file["llama.vocab_size"]?.integer ?? tokens.count,
                layers: try integer("llama.block_count"), heads: heads,
                kvHeads: file["llama.attention.head_count_kv"]?.integer ?? heads, width: width,
                hiddenWidth: try integer("llama.feed_forward_length"), maxLength: try integer("llama.context_length"),
                normEpsilon: Float(try number("llama.attention.layer_norm_rms_epsilon", 1e-5)),
                ropeTheta: try number("llama.rope.freq_base", 10_000), tiedEmbeddings: !hasOutput)
        case .gpt2:
            // GPT-2's head is the token table; llama.cpp's converter writes it out again as output.weight (checked
            // to be the same when the tensors are read).
            config = ModelConfig(
                architecture: .gpt2, vocabSize: file["gpt2.vocab_size"]?.integer ?? tokens.count,
                layers: try integer("gpt2.block_count"), heads: heads, width: width,
                hiddenWidth: try integer("gpt2.feed_forward_length"), maxLength: try integer("gpt2.context_length"),
                normEpsilon: Float(try number("gpt2.attention.layer_norm_epsilon", 1e-5)))
        }
        do { try config.validate() } catch { throw fail("\(error)") }
        guard config.vocabSize == tokens.count else {
            throw fail("\(arch).vocab_size is \(config.vocabSize) but the tokenizer lists \(tokens.count) tokens")
        }
        // Every block the header counts has tensors, and every tensor the model needs is there in its shape, before
        // anything is laid out or allocated for the sizes the header claims (llama.cpp checks its keys' ranges too).
        let blocks = Set(file.tensors.compactMap { tensor -> Int? in
            tensor.name.hasPrefix("blk.") ? Int(tensor.name.dropFirst(4).prefix { $0 != "." }) : nil
        })
        guard blocks.count == config.layers, blocks.allSatisfy({ $0 < config.layers }) else {
            throw fail("\(arch).block_count is \(config.layers), but the file holds the tensors of \(blocks.count) blocks")
        }
        let tensors = Dictionary(file.tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for entry in ParameterTable(config: config).entries { _ = try tensor(for: entry, in: tensors, config: config, fail: fail) }
        let eos = file["tokenizer.ggml.eos_token_id"]?.integer, bos = file["tokenizer.ggml.bos_token_id"]?.integer
        // Every prompt would start with the beginning-of-sequence id, and generation trapped on one the model has no
        // row for.
        for (key, id) in [("bos", bos), ("eos", eos)] {
            if let id, !tokens.indices.contains(id) {
                throw fail("tokenizer.ggml.\(key)_token_id is \(id), not one of the \(tokens.count) tokens")
            }
        }
        var counts: [String: Int] = [:]
        for tensor in file.tensors { counts[GGMLType.name(tensor.type) ?? "type \(tensor.type)", default: 0] += 1 }
        return Description(
            config: config,
            tokenizer: GGUFExport.Tokenizer(tokens: tokens, types: types, merges: merges,
                                            preTokenizer: file["tokenizer.ggml.pre"]?.string ?? "default",
                                            endOfText: eos ?? 0),
            beginningOfText: bos, endOfSequence: eos,
            addsBeginningOfText: {
                if case .bool(let adds)? = file["tokenizer.ggml.add_bos_token"] { return adds }
                return preTokenizersAddingBOS.contains(file["tokenizer.ggml.pre"]?.string ?? "default")
            }(),
            chatTemplate: file["tokenizer.chat_template"]?.string, name: file["general.name"]?.string,
            tensorTypes: counts)
    }

    /// The file's tensor for Keel's `entry`, by its llama.cpp name, checked to have the entry's shape.
    private static func tensor(for entry: ParameterEntry, in tensors: [String: GGUFTensor], config: ModelConfig,
                               fail: (String) -> KeelError) throws -> GGUFTensor {
        guard let name = GGUFExport.llamaCppName(of: entry.name, config.architecture) else {
            throw fail("no llama.cpp name for \(entry.name)")
        }
        guard let tensor = tensors[name] else { throw fail("missing tensor \(name) (Keel's \(entry.name))") }
        // Rows of output features; GGUF lists dimensions innermost first.
        let (rows, columns) = GGUFExport.rowsAndColumns(entry, config)
        let expected = entry.shape.count == 1 ? entry.shape : [columns, rows]
        guard tensor.dimensions == expected else {
            throw fail("tensor \(name) has dimensions \(tensor.dimensions), expected \(expected)")
        }
        return tensor
    }

    /// The model of `file` with `config` (from `describe`): every tensor of Keel's Llama found under its llama.cpp
    /// name, with the shape it must have, dequantized; any tensor Keel has no place for is an error.
    public static func model(of file: GGUFFile, config: ModelConfig, path: String) throws -> Transformer {
        try load(file, config: config, path: path, keepingQuantized: false).model
    }

    /// The model of `file` as it runs quantized: every matrix stored in a format Keel computes on (F16, Q8_0, Q4_0,
    /// Q4_1, Q4_K) kept as those bytes, by Keel's tensor name, rows in Keel's order — the token table too, whose
    /// rows embedding lookups dequantize one at a time and which a tied head multiplies quantized; the rest
    /// dequantized into the model, where the quantized matrices' spans are left untouched (zero, never resident).
    public static func quantizedModel(of file: GGUFFile, config: ModelConfig, path: String) throws
        -> (model: Transformer, quantized: [String: QuantizedMatrix]) {
        try load(file, config: config, path: path, keepingQuantized: true)
    }

    private static func load(_ file: GGUFFile, config: ModelConfig, path: String, keepingQuantized: Bool) throws
        -> (model: Transformer, quantized: [String: QuantizedMatrix]) {
        func fail(_ message: String) -> KeelError { KeelError("\(path): \(message)") }
        let model = try Transformer(config: config, seed: 0, initialized: false)
        let tensors = Dictionary(file.tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var used = Set<String>()
        var quantized: [String: QuantizedMatrix] = [:]
        for entry in model.table.entries {
            let tensor = try tensor(for: entry, in: tensors, config: config, fail: fail)
            let name = tensor.name
            guard let bytes = file.bytes(of: name) else { throw fail("missing tensor \(name) (Keel's \(entry.name))") }
            let (rows, columns) = GGUFExport.rowsAndColumns(entry, config)
            used.insert(name)
            let heads = GGUFExport.rotatedHeads(entry.name, config)
            // Kept as blocks: the matrices products read, and the token table (looked up a row at a time).
            if keepingQuantized, entry.role == .matrix || entry.slot == .tokenTable,
               let format = QuantizationFormat.allCases.first(where: { $0.ggmlType == tensor.type }),
               columns % format.blockValues == 0 {
                if let heads {
                    // q and k rows move back into Keel's order: a copy.
                    let rowBytes = GGUFExport.permutedForLlamaCpp([UInt8](bytes), heads: heads, headDim: config.headDim,
                                                                  rowLength: format.rowBytes(columns: columns), inverse: true)
                    quantized[entry.name] = try QuantizedMatrix(format: format, rows: rows, columns: columns, bytes: rowBytes)
                } else {
                    // The rest is computed on where it lies in the file's mapping, or on an interleaved copy
                    // (then the file's pages are handed back).
                    let matrix = try QuantizedMatrix(format: format, rows: rows, columns: columns, data: bytes)
                    if matrix.isInterleaved { file.releasePages(of: name) }
                    quantized[entry.name] = matrix
                }
                continue
            }
            var values = try dequantize(bytes, type: tensor.type, rows: rows, columns: columns, tensor: name, path: path)
            if let heads {
                values = GGUFExport.permutedForLlamaCpp(values, heads: heads, headDim: config.headDim, rowLength: columns,
                                                        inverse: true)
            }
            if GGUFExport.isTransposed(entry, config) { values = transposed(values, rows: rows, columns: columns) }
            guard values.allSatisfy(\.isFinite) else { throw fail("tensor \(name) holds NaN or infinite values") }
            values.withUnsafeBufferPointer {
                (model.parameters.pointer + entry.offset).update(from: $0.baseAddress!, count: entry.count)
            }
            // The model's buffer holds the values now: the file's pages go back, so that an f32 file is not held twice.
            file.releasePages(of: name)
        }
        // GPT-2's head written out (llama.cpp's converter does): it must be the token table.
        if config.architecture == .gpt2, !used.contains("output.weight"), let head = tensors["output.weight"] {
            let table = tensors["token_embd.weight"]!
            guard head.type == table.type, file.bytes(of: head.name) == file.bytes(of: table.name) else {
                let types = [head, table].map { GGMLType.name($0.type) ?? "type \($0.type)" }
                throw fail("output.weight (\(types[0])) is not the token table (\(types[1])): Keel's GPT-2 ties its head; quantize the file with llama-quantize --output-tensor-type \(types[1].lowercased()) (or --pure)")
            }
            used.insert("output.weight")
        }
        // llama.cpp's converter may add RoPE frequency factors and the like; a tensor ignored would run another model.
        if let unused = file.tensors.first(where: { !used.contains($0.name) }) {
            throw fail("tensor \(unused.name) has no place in Keel's \(config.architecture == .llama ? "Llama" : "GPT-2")")
        }
        return (model, quantized)
    }

    /// `rows` × `columns` values from the bytes of a tensor of ggml type `type`.
    static func dequantize(_ bytes: Data, type: Int, rows: Int, columns: Int, tensor: String, path: String) throws -> [Float] {
        let count = rows * columns
        switch type {
        case 0:
            return bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self).prefix(count)) }
        case 1:
            return bytes.withUnsafeBytes { $0.bindMemory(to: UInt16.self).prefix(count).map { Float(Float16(bitPattern: $0)) } }
        case 30:
            return bytes.withUnsafeBytes { $0.bindMemory(to: UInt16.self).prefix(count).map { Float(bitPattern: UInt32($0) << 16) } }
        default:
            guard let values = QuantizedMatrix.dequantized(ggmlType: type, rows: rows, columns: columns, bytes: bytes) else {
                throw KeelError("\(path): tensor \(tensor) is \(GGMLType.name(type) ?? "type \(type)"); Keel reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K and Q6_K")
            }
            return values
        }
    }
}

import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelInference
import KeelKernels
import KeelModel
import XCTest

/// GGUF files read back into Keel models: a file laid out as llama.cpp's converter lays it out, written by gguf-py
/// (Tests/Reference/gguf_files.py model), imports to the weights gguf-py dequantizes and the ids Hugging Face
/// `tokenizers` gives; Keel's own exports import to the same weights and export back to the same bytes; a file run
/// in its own formats computes what Keel's quantized decoder computes; bad files are one error.
final class GGUFImportTests: XCTestCase {
    private func temporaryFile(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("keel-gguf-import-\(UUID())-\(name)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    private func ggufPy(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", ModelFixtures.repositoryRoot.appendingPathComponent("Tests/Reference/gguf_files.py").path] + arguments
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "gguf_files.py \(arguments.joined(separator: " ")) failed (pip install gguf==0.19.0 tokenizers)")
    }

    private func values(_ model: Transformer, _ name: String) -> [Float] {
        let entry = model.table[name]!
        return Array(UnsafeBufferPointer(start: model.parameters.pointer + entry.offset, count: entry.count))
    }

    func testImportGivesWhatGgufPyDequantizesAndTokenizersEncodes() throws {
        let url = temporaryFile("tiny.gguf"), expectedURL = temporaryFile("expected.safetensors")
        try ggufPy(["model", url.path, expectedURL.path])
        let file = try GGUFFile(contentsOf: url)
        let description = try GGUFImport.describe(file, path: url.path)
        XCTAssertEqual(description.config, ModelConfig(architecture: .llama, vocabSize: 265, layers: 2, heads: 4, kvHeads: 2,
                                                       width: 64, hiddenWidth: 256, maxLength: 128, normEpsilon: 1e-5,
                                                       ropeTheta: 100_000, tiedEmbeddings: true))
        XCTAssertEqual(description.endOfSequence, 2)
        XCTAssertEqual(description.beginningOfText, 1)
        XCTAssertFalse(description.addsBeginningOfText)
        XCTAssertNil(description.textStart, "BOS is given, but not asked for")
        XCTAssertEqual(description.name, "tiny smollm-like")
        XCTAssertEqual(description.tensorTypes, ["F32": 5, "F16": 1, "BF16": 1, "Q8_0": 5, "Q4_0": 1, "Q4_1": 5, "Q4_K": 2])
        XCTAssertTrue(description.chatTemplate?.contains("<|im_start|>") ?? false)

        let model = try GGUFImport.model(of: file, config: description.config, path: url.path)
        let expected = try SafetensorsFile(url: expectedURL)
        XCTAssertEqual(Set(model.table.entries.map(\.name)), Set(expected.entries.keys).subtracting(["ids"]))
        for entry in model.table.entries {
            XCTAssertEqual(values(model, entry.name), try expected.doubles(entry.name).map(Float.init), entry.name)
        }

        let lists = description.tokenizer
        let vocabulary = try GGUFVocabulary(tokens: lists.tokens, types: lists.types, merges: lists.merges,
                                            preTokenizer: lists.preTokenizer, endOfText: lists.endOfText).vocabulary()
        XCTAssertEqual(vocabulary.pattern, .gpt2Digits)
        XCTAssertEqual(vocabulary.endOfText, 0)
        XCTAssertEqual(vocabulary.specialTokens["<|im_end|>"], 2)
        var ids: [Int32] = []
        try Array(expected.metadata["text"]!.utf8).withUnsafeBufferPointer {
            try BPEEncoder(vocabulary: vocabulary).encode($0, specialTokens: .allowed, into: &ids)
        }
        XCTAssertEqual(ids.map(Double.init), try expected.doubles("ids"))
    }

    /// Keel's exports read back to the very weights, and (being exact in f32 and f16, idempotent in q8_0) write
    /// back to the very bytes — with an untied head and with a tied one.
    func testExportImportExportIsByteIdentical() throws {
        let gpt2 = ModelConfig(architecture: .gpt2, vocabSize: 40, layers: 2, heads: 4, width: 64, hiddenWidth: 96, maxLength: 32)
        for (tied, family) in [(false, Architecture.llama), (true, .llama), (true, .gpt2)] {
            let config = family == .gpt2 ? gpt2
                : ModelConfig(architecture: .llama, vocabSize: 40, layers: 2, heads: 4, kvHeads: 2, width: 64,
                              hiddenWidth: 96, maxLength: 32, ropeTheta: 500_000, tiedEmbeddings: tied)
            let original = try ModelFixtures.randomModel(config, seed: 5)
            let tokenizer = GGUFExport.Tokenizer(tokens: (0..<40).map { "t\($0)" }, types: Array(repeating: 1, count: 40),
                                                 merges: ["t 1"], preTokenizer: "gpt-2", endOfText: 39)
            for type in [GGUFExport.WeightType.f32, .f16, .q8_0] {
                let label = "\(family) \(type.rawValue), \(tied ? "tied" : "untied")"
                let exported = try GGUFExport.file(for: original, type: type, tokenizer: tokenizer)
                let url = temporaryFile("\(type.rawValue).gguf")
                try exported.write(to: url)
                let file = try GGUFFile(contentsOf: url)
                // llama.cpp's converter writes GPT-2's tied head out; a tied Llama has none.
                XCTAssertEqual(file.tensors.contains { $0.name == "output.weight" }, !tied || family == .gpt2, label)
                let description = try GGUFImport.describe(file, path: url.path)
                XCTAssertEqual(description.config, config, label)
                let imported = try GGUFImport.model(of: file, config: description.config, path: url.path)
                if type == .f32 {
                    XCTAssertEqual(imported.parameters.toArray(), original.parameters.toArray(), label)
                }
                let again = temporaryFile("again.gguf")
                try GGUFExport.file(for: imported, type: type, tokenizer: description.tokenizer).write(to: again)
                XCTAssertEqual(try Data(contentsOf: again), try Data(contentsOf: url), label)
            }
        }
    }

    /// A file without `tokenizer.ggml.add_bos_token` starts its texts with BOS as llama.cpp decides by the
    /// pre-tokenizer: Llama 3's (whose files have no such key) do, GPT-2's do not; the key, when present, decides.
    func testBOSWithoutTheKeyFollowsThePreTokenizer() throws {
        let config = ModelConfig(architecture: .llama, vocabSize: 40, layers: 1, heads: 2, kvHeads: 1, width: 16,
                                 hiddenWidth: 32, maxLength: 16, tiedEmbeddings: true)
        let model = try ModelFixtures.randomModel(config, seed: 3)
        for (pre, key, adds) in [("llama-bpe", nil, true), ("llama3", nil, true), ("gpt-2", nil, false), ("llama-bpe", false, false),
                                 ("gpt-2", true, true)] as [(String, Bool?, Bool)] {
            let tokenizer = GGUFExport.Tokenizer(tokens: (0..<40).map { "t\($0)" }, types: Array(repeating: 1, count: 38) + [3, 3],
                                                 merges: ["t 1"], preTokenizer: pre, endOfText: 39, textStart: 38)
            var file = try GGUFExport.file(for: model, type: .f32, tokenizer: tokenizer)
            file.metadata.removeAll { $0.key == "tokenizer.ggml.add_bos_token" }
            if let key { file.metadata.append((key: "tokenizer.ggml.add_bos_token", value: .bool(key))) }
            let url = temporaryFile("bos.gguf")
            try file.write(to: url)
            let description = try GGUFImport.describe(GGUFFile(contentsOf: url), path: url.path)
            XCTAssertEqual(description.textStart, adds ? 38 : nil, "\(pre), add_bos_token \(key.map(String.init) ?? "absent")")
        }
    }

    /// A file run in its own formats (its blocks or halves, its q/k rows put back in Keel's order, a projection
    /// assembled from several tensors) computes exactly what Keel's decoder computes quantizing the same weights itself.
    func testQuantizedFileRunsAsKeelsQuantizedDecoder() throws {
        let gpt2 = ModelConfig(architecture: .gpt2, vocabSize: 48, layers: 2, heads: 4, width: 64, hiddenWidth: 96, maxLength: 32)
        for (format, type) in [(QuantizationFormat.q8_0, GGUFExport.WeightType.q8_0), (.f16, .f16)] {
            for (tied, family) in [(false, Architecture.llama), (true, .llama), (true, .gpt2)] {
                let label = "\(family) \(format.rawValue), \(tied ? "tied" : "untied")"
                let config = family == .gpt2 ? gpt2
                    : ModelConfig(architecture: .llama, vocabSize: 48, layers: 2, heads: 4, kvHeads: 2, width: 64,
                                  hiddenWidth: 96, maxLength: 32, tiedEmbeddings: tied)
                let model = try ModelFixtures.randomModel(config, seed: 9)
                // Lookups read the token table in fp32: make it the values its blocks stand for, so that the file's
                // table (looked up from its blocks) and the original are the same.
                let table = model.table.entries.first { $0.slot == .tokenTable }!
                let exact = try QuantizedMatrix(quantizing: values(model, table.name), rows: 48, columns: 64, format: format).dequantized()
                exact.withUnsafeBufferPointer { (model.parameters.pointer + table.offset).update(from: $0.baseAddress!, count: table.count) }
                let tokenizer = GGUFExport.Tokenizer(tokens: (0..<48).map { "t\($0)" }, types: Array(repeating: 1, count: 48),
                                                     merges: [], preTokenizer: "gpt-2", endOfText: 47)
                let url = temporaryFile("\(format.rawValue).gguf")
                try GGUFExport.file(for: model, type: type, tokenizer: tokenizer).write(to: url)
                let file = try GGUFFile(contentsOf: url)
                let (fileModel, quantized) = try GGUFImport.quantizedModel(of: file, config: config, path: url.path)
                XCTAssertEqual(Set(quantized.keys).count, 2 * (family == .gpt2 ? 4 : 7) + 1 + (tied ? 0 : 1), label)
                // The quantized matrices' fp32 spans were never written.
                let down = family == .gpt2 ? "transformer.h.1.mlp.c_proj.weight" : "model.layers.1.mlp.down_proj.weight"
                XCTAssertTrue(values(fileModel, down).allSatisfy { $0 == 0 }, label)
                let fromFile = try Decoder(model: fileModel, quantizedTensors: quantized)
                XCTAssertEqual(fromFile.quantization, format, label)
                let keel = try Decoder(model: model, quantization: format)
                let tokens: [Int32] = [3, 17, 40, 2, 2, 9, 31, 0, 46, 12]
                XCTAssertEqual(fromFile.logits(of: tokens), keel.logits(of: tokens), label)
            }
        }
    }

    func testBadFilesAreOneErrorNamingTheFault() throws {
        let config = ModelConfig(architecture: .llama, vocabSize: 40, layers: 1, heads: 2, width: 32, hiddenWidth: 64,
                                 maxLength: 16)
        let model = try ModelFixtures.randomModel(config, seed: 2)
        let tokenizer = GGUFExport.Tokenizer(tokens: (0..<40).map { "t\($0)" }, types: Array(repeating: 1, count: 40),
                                             merges: [], preTokenizer: "gpt-2", endOfText: 39)
        let good = try GGUFExport.file(for: model, type: .f32, tokenizer: tokenizer)
        func expectError(_ file: GGUFFile, _ message: String, file source: StaticString = #filePath, line: UInt = #line) throws {
            let url = temporaryFile("bad.gguf")
            try file.write(to: url)
            let read = try GGUFFile(contentsOf: url)
            XCTAssertThrowsError(try GGUFImport.model(of: read, config: try GGUFImport.describe(read, path: "bad.gguf").config, path: "bad.gguf"),
                                 file: source, line: line) {
                XCTAssertEqual("\($0)", message, file: source, line: line)
            }
        }
        func rebuilt(metadata: (inout [(key: String, value: GGUFValue)]) -> Void = { _ in },
                     tensors keep: (GGUFTensor) -> Bool = { _ in true }, extra: Bool = false) throws -> GGUFFile {
            var file = GGUFFile()
            file.metadata = good.metadata
            metadata(&file.metadata)
            for tensor in good.tensors where keep(tensor) {
                try file.append(name: tensor.name, type: tensor.type, dimensions: tensor.dimensions, bytes: good.bytes(of: tensor.name)!)
            }
            if extra { try file.append(name: "rope_freqs.weight", type: 0, dimensions: [8], bytes: Data(count: 32)) }
            return file
        }
        try expectError(try rebuilt(metadata: { $0[0].value = .string("falcon") }),
                        "bad.gguf: general.architecture is \"falcon\"; Keel imports Llama-family (\"llama\") and GPT-2 (\"gpt2\") models")
        try expectError(try rebuilt(tensors: { $0.name != "blk.0.ffn_up.weight" }),
                        "bad.gguf: missing tensor blk.0.ffn_up.weight (Keel's model.layers.0.mlp.up_proj.weight)")
        try expectError(try rebuilt(extra: true), "bad.gguf: tensor rope_freqs.weight has no place in Keel's Llama")
        try expectError(try rebuilt(metadata: { m in
            m = m.map { $0.key == "llama.feed_forward_length" ? ($0.key, .uint32(32)) : $0 }
        }), "bad.gguf: tensor blk.0.ffn_gate.weight has dimensions [32, 64], expected [32, 32]")
        try expectError(try rebuilt(metadata: { m in m = m.filter { $0.key != "llama.block_count" } }),
                        "bad.gguf: missing or invalid llama.block_count")
        // Sizes no file could back are refused before a model is laid out for them (they ran out of memory, or
        // trapped on an overflow): a block count of four billion, a width of 2⁴⁷, more blocks than the file has.
        func setting(_ values: [String: GGUFValue]) -> (inout [(key: String, value: GGUFValue)]) -> Void {
            { m in m = m.filter { $0.key != "llama.rope.dimension_count" }.map { (key: $0.key, value: values[$0.key] ?? $0.value) } }
        }
        try expectError(try rebuilt(metadata: setting(["llama.block_count": .uint32(4_000_000_000)])),
                        "bad.gguf: config: model.n_layer is 4000000000, over 4096: not a model Keel can hold")
        try expectError(try rebuilt(metadata: setting(["llama.embedding_length": .uint64(1 << 47), "llama.attention.head_count": .uint64(1 << 46),
                                                       "llama.attention.head_count_kv": .uint64(1 << 46)])),
                        "bad.gguf: config: model.n_layer (1), d_model (140737488355328), d_ff (64) and vocab_size (40) make over 2⁴⁰ parameters: not a model Keel can hold")
        // A long context with one wide head: rotary tables of gigabytes, for a file of kilobytes.
        try expectError(try rebuilt(metadata: setting(["llama.embedding_length": .uint32(64), "llama.attention.head_count": .uint32(1),
                                                       "llama.attention.head_count_kv": .uint32(1), "llama.context_length": .uint32(1 << 24)])),
                        "bad.gguf: config: model.max_seq_len (16777216) × half the head dimension (32) is over 2²⁸ rotary angles: the tables alone would take 4 GiB")
        // A beginning-of-sequence id outside the vocabulary (every prompt would start with it).
        try expectError(try rebuilt(metadata: { m in
            m = m.map { $0.key == "tokenizer.ggml.bos_token_id" ? ($0.key, .uint32(40)) : $0 }
        }), "bad.gguf: tokenizer.ggml.bos_token_id is 40, not one of the 40 tokens")
        try expectError(try rebuilt(metadata: { m in
            m = m.map { $0.key == "tokenizer.ggml.merges" ? ($0.key, .array(.uint32, [.uint32(1)])) : $0 }
        }),
                        "bad.gguf: tokenizer.ggml.merges must be a list of strings")
        try expectError(try rebuilt(metadata: setting(["llama.block_count": .uint32(3)])),
                        "bad.gguf: llama.block_count is 3, but the file holds the tensors of 1 blocks")
        try expectError(try rebuilt(metadata: { m in m.append((key: "llama.rope.scaling.type", value: .string("yarn"))) }),
                        "bad.gguf: the model scales RoPE (llama.rope.scaling.*), which Keel does not implement")
    }
}

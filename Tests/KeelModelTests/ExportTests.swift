import Foundation
import KeelCheckpoint
import KeelCore
import KeelModel
import XCTest

/// The Hugging Face export, checked against the safetensors specification and the names, shapes and
/// config keys `transformers` expects (the full `transformers` load is scripts/hf_check/).
final class ExportTests: XCTestCase {
    private func export(_ config: ModelConfig) throws -> (directory: URL, model: Transformer) {
        let model = try ModelFixtures.randomModel(config, seed: 21)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-export-\(UUID())")
        try HuggingFaceExport.write(model, to: directory, endOfText: 22)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        return (directory, model)
    }

    /// Parses a safetensors file by the specification, independently of `SafetensorsFile`.
    private func parseBySpecification(_ url: URL) throws -> (header: [String: Any], data: Data) {
        let bytes = try Data(contentsOf: url)
        let length = bytes.prefix(8).enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
        XCTAssertEqual((8 + length) % 8, 0, "data must start 8-byte aligned")
        let header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + length))) as! [String: Any]
        let data = bytes.subdata(in: (8 + length)..<bytes.count)
        // Byte ranges tile the data section exactly.
        let ranges = header.filter { $0.key != "__metadata__" }
            .map { (($0.value as! [String: Any])["data_offsets"] as! [Int]) }.sorted { $0[0] < $1[0] }
        var next = 0
        for range in ranges {
            XCTAssertEqual(range[0], next)
            next = range[1]
        }
        XCTAssertEqual(next, data.count)
        return (header, data)
    }

    func testGPT2Export() throws {
        let (directory, model) = try export(ModelFixtures.gpt2)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(config["model_type"] as? String, "gpt2")
        XCTAssertEqual(config["architectures"] as? [String], ["GPT2LMHeadModel"])
        XCTAssertEqual(config["n_embd"] as? Int, 16)
        XCTAssertEqual(config["n_inner"] as? Int, 40)
        XCTAssertEqual(config["n_positions"] as? Int, 8)
        XCTAssertEqual(config["activation_function"] as? String, "gelu_new")
        XCTAssertEqual(config["tie_word_embeddings"] as? Bool, true)
        let (header, data) = try parseBySpecification(directory.appendingPathComponent("model.safetensors"))
        XCTAssertEqual((header["__metadata__"] as? [String: String])?["format"], "pt")
        XCTAssertNil(header["lm_head.weight"], "GPT-2's head is tied to wte and not stored")
        let expected: [String: [Int]] = [
            "transformer.wte.weight": [23, 16], "transformer.wpe.weight": [8, 16],
            "transformer.h.1.attn.c_attn.weight": [16, 48], "transformer.h.1.attn.c_attn.bias": [48],
            "transformer.h.0.mlp.c_fc.weight": [16, 40], "transformer.h.0.mlp.c_proj.weight": [40, 16],
            "transformer.ln_f.bias": [16],
        ]
        for (name, shape) in expected {
            XCTAssertEqual((header[name] as? [String: Any])?["shape"] as? [Int], shape, name)
            XCTAssertEqual((header[name] as? [String: Any])?["dtype"] as? String, "F32", name)
        }
        XCTAssertEqual(header.count - 1, 4 + 12 * 2)
        // Values are the model's, bit for bit.
        let entry = model.table["transformer.h.1.attn.c_attn.weight"]!
        let range = (header[entry.name] as! [String: Any])["data_offsets"] as! [Int]
        let stored = data.subdata(in: range[0]..<range[1]).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(stored, Array(UnsafeBufferPointer(start: model.parameters.pointer + entry.offset, count: entry.count)))
    }

    func testLlamaExport() throws {
        let (directory, _) = try export(ModelFixtures.llama)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(config["model_type"] as? String, "llama")
        XCTAssertEqual(config["num_key_value_heads"] as? Int, 2)
        XCTAssertEqual(config["num_attention_heads"] as? Int, 4)
        XCTAssertEqual(config["intermediate_size"] as? Int, 24)
        XCTAssertEqual(config["tie_word_embeddings"] as? Bool, false)
        XCTAssertEqual(config["rms_norm_eps"] as? Double, 1e-6)
        XCTAssertEqual([config["bos_token_id"] as? Int, config["eos_token_id"] as? Int], [22, 22], "GPT-2's way, without a text start")
        // A model whose texts start with a token of their own (an imported Llama 3) names it as its BOS, not its EOS.
        let started = HuggingFaceExport.config(for: ModelFixtures.llama, endOfText: 22, beginningOfText: 21)
        XCTAssertEqual([started["bos_token_id"] as? Int, started["eos_token_id"] as? Int], [21, 22])
        let (header, _) = try parseBySpecification(directory.appendingPathComponent("model.safetensors"))
        let expected: [String: [Int]] = [
            "model.embed_tokens.weight": [23, 16], "lm_head.weight": [23, 16], "model.norm.weight": [16],
            "model.layers.0.self_attn.q_proj.weight": [16, 16], "model.layers.0.self_attn.k_proj.weight": [8, 16],
            "model.layers.0.self_attn.v_proj.weight": [8, 16], "model.layers.1.self_attn.o_proj.weight": [16, 16],
            "model.layers.1.mlp.gate_proj.weight": [24, 16], "model.layers.1.mlp.down_proj.weight": [16, 24],
            "model.layers.1.post_attention_layernorm.weight": [16],
        ]
        for (name, shape) in expected {
            XCTAssertEqual((header[name] as? [String: Any])?["shape"] as? [Int], shape, name)
        }
        XCTAssertEqual(header.count - 1, 3 + 2 * 9)
    }

    func testSafetensorsRoundTripAndCorruption() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-st-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("t.safetensors")
        let values: [Float] = [1, -2, 3.5, .pi, 0, 7]
        try values.withUnsafeBufferPointer {
            try Safetensors.write([TensorSlice(name: "x", shape: [2, 3], floats: $0.baseAddress!)], to: url)
        }
        var restored = [Float](repeating: 0, count: 6)
        try SafetensorsFile(url: url).copyFloats("x", shape: [2, 3], to: &restored)
        XCTAssertEqual(restored, values)
        XCTAssertThrowsError(try SafetensorsFile(url: url).copyFloats("x", shape: [3, 2], to: &restored))
        XCTAssertThrowsError(try SafetensorsFile(url: url).entry("y"))
        // Garbage and a header that claims more bytes than exist are rejected with the file named.
        try Data("not a safetensors file at all".utf8).write(to: url)
        XCTAssertThrowsError(try SafetensorsFile(url: url)) { XCTAssertTrue("\($0)".contains(url.path)) }
        XCTAssertThrowsError(try SafetensorsFile(url: directory.appendingPathComponent("missing.safetensors")))
    }

    /// Files the safetensors library refuses are refused: two tensors on the same bytes, a gap between tensors,
    /// bytes after the last one.
    func testSafetensorsWhoseTensorsDoNotTileTheDataAreRefused() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("keel-tile-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        func file(_ tensors: [(String, [Int])], dataBytes: Int) throws -> String {
            let entries = tensors.map { "\"\($0.0)\":{\"dtype\":\"F32\",\"shape\":[\(($0.1[1] - $0.1[0]) / 4)],\"data_offsets\":[\($0.1[0]),\($0.1[1])]}" }
            var header = Array("{\(entries.joined(separator: ","))}".utf8)
            header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)
            let length = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
            try Data(length + header + [UInt8](repeating: 0, count: dataBytes)).write(to: url)
            do { _ = try SafetensorsFile(url: url) } catch { return "\(error)" }
            return "no error"
        }
        XCTAssertEqual(try file([("a", [0, 16]), ("b", [16, 24])], dataBytes: 24), "no error")
        XCTAssertEqual(try file([("a", [0, 16]), ("b", [0, 16])], dataBytes: 16),
                       "\(url.path): tensor 'b' starts at byte 0 of data, not 16 where the tensor before it ends (two tensors share bytes)")
        XCTAssertEqual(try file([("a", [0, 8]), ("b", [16, 24])], dataBytes: 24),
                       "\(url.path): tensor 'b' starts at byte 16 of data, not 8 where the tensor before it ends")
        XCTAssertEqual(try file([("a", [0, 16])], dataBytes: 20), "\(url.path): the data holds 4 bytes after its last tensor")
    }

    /// An export whose weights cannot be written leaves the directory's earlier export whole: its config is not
    /// replaced by one that no longer matches the weights beside it (here a directory is in the weights' place).
    func testAFailedExportLeavesTheEarlierOneAsItWas() throws {
        let (directory, _) = try export(ModelFixtures.gpt2)
        let config = directory.appendingPathComponent("config.json")
        let before = try Data(contentsOf: config)
        let weights = directory.appendingPathComponent("model.safetensors")
        try FileManager.default.removeItem(at: weights)
        try FileManager.default.createDirectory(at: weights, withIntermediateDirectories: false)
        try FileManager.default.createDirectory(at: weights.appendingPathComponent("in-the-way"), withIntermediateDirectories: false)
        var llama = ModelFixtures.gpt2
        llama.architecture = .llama
        llama.tiedEmbeddings = false
        XCTAssertThrowsError(try HuggingFaceExport.write(try ModelFixtures.randomModel(llama, seed: 3), to: directory, endOfText: 22))
        XCTAssertEqual(try Data(contentsOf: config), before)
    }
}

import Foundation
import KeelCheckpoint
import KeelCore
import KeelKernels
import KeelModel
import XCTest

/// GGUF files: what gguf-py 0.19.0 (Tests/Reference/gguf_files.py) writes, Keel reads, and writes back to the
/// byte; what Keel writes, gguf-py reads; damaged files are one clear error.
final class GGUFTests: XCTestCase {
    private func temporaryFile(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("keel-gguf-\(UUID())-\(name)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    @discardableResult
    private func ggufPy(_ arguments: [String]) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", ModelFixtures.repositoryRoot.appendingPathComponent("Tests/Reference/gguf_files.py").path] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "gguf_files.py \(arguments.joined(separator: " ")) failed (pip install gguf==0.19.0)")
        return output
    }

    /// gguf-py's reading of `url`: metadata (key, type names, value), alignment, tensors (name, type, dimensions,
    /// byte count, hex bytes).
    private func describe(_ url: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: try ggufPy(["describe", url.path])) as! [String: Any]
    }

    private static func typeNames(_ value: GGUFValue) -> [String] {
        // gguf-py's reader names an array's element type from its first element: an empty one is just "ARRAY".
        if case .array(let element, let elements) = value { return ["ARRAY"] + (elements.isEmpty ? [] : ["\(element)".uppercased()]) }
        return ["\(value.type)".uppercased()]
    }

    /// The value as JSON gives gguf-py's contents(): numbers, strings, bools and lists of them.
    private static func matches(_ value: GGUFValue, _ json: Any) -> Bool {
        switch value {
        case .array(_, let elements):
            guard let list = json as? [Any], list.count == elements.count else { return false }
            return zip(elements, list).allSatisfy { matches($0, $1) }
        case .string(let text): return json as? String == text
        case .bool(let flag): return (json as? Bool) == flag
        case .float32(let number): return (json as? NSNumber)?.floatValue == number
        case .float64(let number): return (json as? NSNumber)?.doubleValue == number
        case .uint64(let number): return (json as? NSNumber)?.uint64Value == number
        default: return (json as? NSNumber)?.int64Value == Int64(value.integer!)
        }
    }

    private func assertSame(_ file: GGUFFile, _ description: [String: Any], _ context: String) {
        let fields = description["fields"] as! [[Any]]
        XCTAssertEqual(file.metadata.map(\.key), fields.map { $0[0] as! String }, context)
        for ((_, value), field) in zip(file.metadata, fields) {
            XCTAssertEqual(Self.typeNames(value), field[1] as! [String], "\(context): type of \(field[0])")
            XCTAssertTrue(Self.matches(value, field[2]), "\(context): value of \(field[0]): \(value) against \(field[2])")
        }
        XCTAssertEqual(file.alignment, description["alignment"] as? Int, context)
        let tensors = description["tensors"] as! [[Any]]
        XCTAssertEqual(file.tensors.map(\.name), tensors.map { $0[0] as! String }, context)
        for (tensor, theirs) in zip(file.tensors, tensors) {
            XCTAssertEqual(tensor.type, theirs[1] as? Int, "\(context): \(tensor.name)")
            XCTAssertEqual(tensor.dimensions, theirs[2] as? [Int], "\(context): \(tensor.name)")
            XCTAssertEqual(tensor.byteCount, theirs[3] as? Int, "\(context): \(tensor.name)")
            let hex = file.bytes(of: tensor.name)!.map { String(format: "%02x", $0) }.joined()
            XCTAssertEqual(hex, theirs[4] as? String, "\(context): bytes of \(tensor.name)")
        }
    }

    func testKeelReadsWhatGgufPyWritesAndWritesItBackToTheByte() throws {
        for alignment in [32, 64] {
            let original = temporaryFile("py-\(alignment).gguf"), copy = temporaryFile("keel-\(alignment).gguf")
            try ggufPy(["write", original.path] + (alignment == 32 ? [] : ["--alignment", "64"]))
            let file = try GGUFFile(contentsOf: original)
            XCTAssertEqual(file.alignment, alignment)
            assertSame(file, try describe(original), "alignment \(alignment)")
            try file.write(to: copy)
            XCTAssertEqual(try Data(contentsOf: copy), try Data(contentsOf: original), "alignment \(alignment): written back")
        }
    }

    func testGgufPyReadsWhatKeelWrites() throws {
        var file = GGUFFile()
        file.metadata = [("general.architecture", .string("llama")), ("llama.block_count", .uint32(30)),
                         ("llama.attention.layer_norm_rms_epsilon", .float32(1e-5)), ("test.int8", .int8(-7)),
                         ("test.uint16", .uint16(65535)), ("test.int16", .int16(-2)), ("test.uint64", .uint64(1 << 50)),
                         ("test.int64", .int64(-3)), ("test.float64", .float64(-2.5)), ("test.uint8", .uint8(1)),
                         ("tokenizer.ggml.add_bos_token", .bool(true)),
                         ("tokenizer.ggml.tokens", .array(.string, [.string("Ġhello"), .string(""), .string("ü")])),
                         ("tokenizer.ggml.token_type", .array(.int32, [.int32(1), .int32(3), .int32(6)])),
                         ("test.empty", .array(.uint32, []))]
        let values = (0..<96).map { Float($0) / 7 }
        try file.append(name: "token_embd.weight", type: 0, dimensions: [32, 3], bytes: values.withUnsafeBytes { Data($0) })
        try file.append(name: "blk.0.attn_q.weight", type: 8, dimensions: [64, 2], bytes: Data((0..<136).map { UInt8($0) }))
        try file.append(name: "blk.0.ffn_up.weight", type: 12, dimensions: [256, 1], bytes: Data((0..<144).map { UInt8(255 - $0) }))
        let url = temporaryFile("keel.gguf")
        try file.write(to: url)
        assertSame(try GGUFFile(contentsOf: url), try describe(url), "read back by Keel")
        assertSame(file, try describe(url), "as written")
    }

    func testDamagedFilesAreOneErrorNamingTheFileAndTheFault() throws {
        let original = temporaryFile("py.gguf")
        try ggufPy(["write", original.path])
        let bytes = [UInt8](try Data(contentsOf: original))
        let damaged = temporaryFile("damaged.gguf")
        func error(_ data: [UInt8]) throws -> String {
            try Data(data).write(to: damaged)
            do {
                _ = try GGUFFile(contentsOf: damaged)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        // Cut anywhere: the header, a key, a value, a tensor description, or the data.
        for length in [3, 10, 30, 200, 900, bytes.count - 1] {
            let message = try error(Array(bytes.prefix(length)))
            XCTAssertTrue(message.hasPrefix(damaged.path + ": "), message)
            XCTAssertTrue(message.contains("the file ends inside") || message.contains("past the end of the file"), "cut at \(length): \(message)")
        }
        var wrongMagic = bytes
        wrongMagic[0] = 0x46
        XCTAssertEqual(try error(wrongMagic), "\(damaged.path): not a GGUF file (it does not start with \"GGUF\")")
        var bigEndian = bytes
        bigEndian.replaceSubrange(4..<8, with: [0, 0, 0, 3])
        XCTAssertTrue(try error(bigEndian).contains("big-endian"))
        // The first tensor's type (after its name, dimension count and two dimensions) set to an unknown one.
        let name = Array("token_embd.weight".utf8)
        let at = (0...(bytes.count - name.count)).first { Array(bytes[$0..<($0 + name.count)]) == name }! + name.count + 4 + 16
        var unknownType = bytes
        unknownType[at] = 99
        let unknownTypeError = try error(unknownType)
        XCTAssertTrue(unknownTypeError.contains("tensor token_embd.weight has ggml type 99"), unknownTypeError)
        // Dimensions whose f32 size is 2⁶³ − 8 bytes: it fits in an Int, but its end past the data's start does not.
        var huge = unknownType
        func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        huge.replaceSubrange((at - 16)..<(at + 4),
                             with: littleEndian(UInt64(1 << 31 - 2)) + littleEndian(UInt64(1 << 30 + 1)) + littleEndian(UInt32(0)))
        let hugeError = try error(huge)
        XCTAssertTrue(hugeError.contains("tensor token_embd.weight (9223372036854775800 bytes at byte")
                      && hugeError.contains("ends past the end of the file"), hugeError)
        var shifted = bytes
        shifted[at + 4] = 32 // its offset, which must be 0
        let shiftedError = try error(shifted)
        XCTAssertTrue(shiftedError.contains("is at offset 32 of the data, not 0"), shiftedError)
    }

    /// Header values gguf.cpp refuses are refused: an alignment that is not a power of two or not a uint32, and an
    /// array whose count its elements could not fill in the rest of the file (refused before memory is reserved
    /// for it, not when the file runs out while reading them).
    func testAlignmentAndArrayCountsAreChecked() throws {
        func error(_ file: GGUFFile, patch: ((inout [UInt8]) -> Void)? = nil) throws -> String {
            let url = temporaryFile("header.gguf")
            try file.write(to: url)
            var bytes = [UInt8](try Data(contentsOf: url))
            patch?(&bytes)
            try Data(bytes).write(to: url)
            do { _ = try GGUFFile(contentsOf: url) } catch { return "\(error)" }
            return "no error"
        }
        var file = GGUFFile()
        file.metadata = [(key: "general.architecture", value: .string("llama"))]
        try file.append(name: "t", type: 0, dimensions: [8], bytes: Data(count: 32))
        XCTAssertEqual(try error(file), "no error")
        for (value, shown) in [(GGUFValue.uint32(24), "uint32(24)"), (.uint32(4), "uint32(4)")] {
            var aligned = file
            aligned.metadata.append((key: "general.alignment", value: value))
            XCTAssertTrue(try error(aligned).hasSuffix("general.alignment is \(Int(value.integer!)), not a power of two of at least 8"), shown)
        }
        var wrongType = file
        wrongType.metadata.append((key: "general.alignment", value: .uint16(32)))
        let wrongTypeError = try error(wrongType)
        XCTAssertTrue(wrongTypeError.hasSuffix("general.alignment is uint16(32), not a uint32 above 0"), wrongTypeError)
        var counted = file
        counted.metadata.append((key: "tokenizer.ggml.token_type", value: .array(.int32, (0..<4).map { .int32($0) })))
        let claimed = try error(counted) { bytes in
            // The count follows the key, its value type (array) and its element type: half the bytes left, which
            // 4-byte elements cannot fill.
            let key = Array("tokenizer.ggml.token_type".utf8)
            let at = (0...(bytes.count - key.count)).first { Array(bytes[$0..<($0 + key.count)]) == key }! + key.count + 8
            let count = UInt64((bytes.count - at - 8) / 2)
            withUnsafeBytes(of: count.littleEndian) { bytes.replaceSubrange(at..<(at + 8), with: $0) }
        }
        XCTAssertTrue(claimed.contains("metadata tokenizer.ggml.token_type claims") && claimed.hasSuffix("elements, more than the file holds"), claimed)
        // An array the file could hold, of more one-byte elements than any vocabulary has entries (each is read as a
        // value of tens of bytes: a gigabyte of them took tens of gigabytes): its count made 2²⁴ + 1, and the file
        // grown to hold that many bytes.
        var long = file
        long.metadata.append((key: "general.blob", value: .array(.uint8, [.uint8(7)])))
        let refused = try error(long) { bytes in
            let key = Array("general.blob".utf8)
            let at = (0...(bytes.count - key.count)).first { Array(bytes[$0..<($0 + key.count)]) == key }! + key.count + 8
            withUnsafeBytes(of: UInt64((1 << 24) + 1).littleEndian) { bytes.replaceSubrange(at..<(at + 8), with: $0) }
            bytes += [UInt8](repeating: 0, count: 1 << 24)
        }
        XCTAssertTrue(refused.hasSuffix("metadata general.blob holds 16777217 elements, more than the 16777216 Keel reads in an array"), refused)
    }

    /// A Llama model as llama.cpp's GGUF: `llama.*` metadata typed as llama.cpp reads it, the tokenizer, tensors
    /// under llama.cpp's names and dimensions, q and k permuted as llama.cpp's converter permutes them, quantized
    /// tensors that dequantize to the weights.
    func testLlamaExportIsWhatLlamaCppReads() throws {
        let config = ModelConfig(architecture: .llama, vocabSize: 40, layers: 2, heads: 4, kvHeads: 2, width: 64,
                                 hiddenWidth: 96, maxLength: 32, ropeTheta: 500_000)
        let model = try ModelFixtures.randomModel(config, seed: 11)
        let tokenizer = GGUFExport.Tokenizer(tokens: (0..<40).map { "t\($0)" }, types: Array(repeating: 1, count: 40),
                                             merges: ["t 1"], preTokenizer: "gpt-2", endOfText: 39)
        let url = temporaryFile("llama.gguf")
        try GGUFExport.file(for: model, type: .f32, tokenizer: tokenizer).write(to: url)
        let file = try GGUFFile(contentsOf: url)
        XCTAssertEqual(file["llama.block_count"], .uint32(2))
        XCTAssertEqual(file["llama.attention.head_count_kv"], .uint32(2))
        XCTAssertEqual(file["llama.rope.dimension_count"], .uint32(16))
        XCTAssertEqual(file["llama.rope.freq_base"], .float32(500_000))
        XCTAssertEqual(file["llama.attention.layer_norm_rms_epsilon"], .float32(config.normEpsilon))
        XCTAssertEqual(file["tokenizer.ggml.token_type"], .array(.int32, Array(repeating: .int32(1), count: 40)))
        XCTAssertEqual(file.tensors.count, 2 + 2 * 9 + 1)
        let byName = Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, $0) })
        XCTAssertEqual(byName["token_embd.weight"]?.dimensions, [64, 40])
        XCTAssertEqual(byName["blk.1.attn_k.weight"]?.dimensions, [64, 32])
        XCTAssertEqual(byName["blk.0.ffn_down.weight"]?.dimensions, [96, 64])
        XCTAssertEqual(byName["output_norm.weight"]?.dimensions, [64])
        // q and k permuted exactly as convert_hf_to_gguf.py permutes them; v untouched.
        for (hf, gguf, heads) in [("model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", 4),
                                  ("model.layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight", 2)] {
            let entry = model.table.entries.first { $0.name == hf }!
            let raw = temporaryFile("hf.f32")
            try Data(bytes: model.parameters.pointer + entry.offset, count: entry.count * 4).write(to: raw)
            try ggufPy(["permuted", url.path, gguf, raw.path, "\(heads)"])
        }
        let v = model.table.entries.first { $0.name == "model.layers.0.self_attn.v_proj.weight" }!
        XCTAssertEqual(file.bytes(of: "blk.0.attn_v.weight"), Data(bytes: model.parameters.pointer + v.offset, count: v.count * 4))
        // Quantized: the blocks of each weight row, as QuantizedMatrix makes them.
        let quantized = try GGUFExport.file(for: model, type: .q8_0, tokenizer: tokenizer)
        let down = model.table.entries.first { $0.name == "model.layers.1.mlp.down_proj.weight" }!
        let values = Array(UnsafeBufferPointer(start: model.parameters.pointer + down.offset, count: down.count))
        XCTAssertEqual(quantized.bytes(of: "blk.1.ffn_down.weight"),
                       Data(try QuantizedMatrix(quantizing: values, rows: 64, columns: 96, format: .q8_0).bytes))
        XCTAssertEqual(quantized.tensors.first { $0.name == "blk.1.ffn_down.weight" }?.type, 8)
        XCTAssertEqual(quantized.tensors.first { $0.name == "output_norm.weight" }?.type, 0)
        // Q4_K rows of 64 or 96 values are not whole blocks of 256: those tensors are Q5_0 (as llama.cpp falls back),
        // the head Q8_0, and the file's type says Q4_K.
        let k = try GGUFExport.file(for: model, type: .q4_k, tokenizer: tokenizer)
        XCTAssertEqual(k.bytes(of: "blk.1.ffn_down.weight"),
                       Data(try QuantizedMatrix(quantizing: values, rows: 64, columns: 96, format: .q5_0).bytes))
        XCTAssertEqual(Set(k.tensors.filter { $0.name.hasPrefix("blk.") && $0.dimensions.count == 2 }.map(\.type)), [6])
        XCTAssertEqual(k.tensors.first { $0.name == "output.weight" }?.type, 8)
        XCTAssertEqual(k["general.file_type"], .uint32(14))
        // What cannot be written is one error: rows of 48 values are not whole blocks of 32.
        let narrow = ModelConfig(architecture: .llama, vocabSize: 40, layers: 1, heads: 4, kvHeads: 2, width: 48,
                                 hiddenWidth: 64, maxLength: 8, ropeTheta: 10_000)
        XCTAssertThrowsError(try GGUFExport.file(for: try ModelFixtures.randomModel(narrow, seed: 2), type: .q4_k, tokenizer: tokenizer)) {
            XCTAssertEqual("\($0)", "GGUF export: token_embd.weight in q5_0: a q5_0 matrix needs rows of a multiple of 32 values; this one has 48")
        }
        XCTAssertThrowsError(try GGUFExport.file(for: try ModelFixtures.randomModel(ModelFixtures.gpt2, seed: 1), type: .f32, tokenizer: tokenizer)) {
            XCTAssertEqual("\($0)", "the tokenizer lists 40 tokens for a vocabulary of 23")
        }
        // A weight beyond half precision is an error in f16, not an infinity in the file.
        (model.parameters.pointer + down.offset)[5] = 70_000
        XCTAssertThrowsError(try GGUFExport.file(for: model, type: .f16, tokenizer: tokenizer)) {
            XCTAssertEqual("\($0)", "GGUF export: blk.1.ffn_down.weight in f16: a value of 70000.0 is beyond half precision (65,504); export it as f32 or q8_0")
        }
    }

    /// GPT-2 as llama.cpp's converter writes it: `gpt2.*` metadata, Conv1D weights transposed to rows of outputs
    /// (dimensions [in, out]), biases and norms and the position table in F32, the tied head written out as
    /// `output.weight`, a copy of the token table.
    func testGPT2ExportIsLaidOutAsLlamaCppsConverter() throws {
        let config = ModelConfig(architecture: .gpt2, vocabSize: 40, layers: 2, heads: 4, width: 64, hiddenWidth: 128, maxLength: 32)
        let model = try ModelFixtures.randomModel(config, seed: 12)
        let tokenizer = GGUFExport.Tokenizer(tokens: (0..<40).map { "t\($0)" }, types: Array(repeating: 1, count: 40),
                                             merges: [], preTokenizer: "gpt-2", endOfText: 39)
        let url = temporaryFile("gpt2.gguf")
        try GGUFExport.file(for: model, type: .q8_0, tokenizer: tokenizer).write(to: url)
        let file = try GGUFFile(contentsOf: url)
        XCTAssertEqual(file["general.architecture"], .string("gpt2"))
        XCTAssertEqual(file["gpt2.block_count"], .uint32(2))
        XCTAssertEqual(file["gpt2.feed_forward_length"], .uint32(128))
        XCTAssertEqual(file["gpt2.attention.layer_norm_epsilon"], .float32(1e-5))
        let byName = Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, $0) })
        XCTAssertEqual(file.tensors.count, 2 + 2 + 2 * 12 + 1)
        XCTAssertEqual(byName["blk.0.attn_qkv.weight"]?.dimensions, [64, 192])
        XCTAssertEqual(byName["blk.1.ffn_down.weight"]?.dimensions, [128, 64])
        XCTAssertEqual(byName["position_embd.weight"]?.type, 0)
        XCTAssertEqual(byName["blk.0.attn_qkv.bias"]?.type, 0)
        XCTAssertEqual(byName["blk.0.attn_qkv.weight"]?.type, 8)
        XCTAssertEqual(file.bytes(of: "output.weight"), file.bytes(of: "token_embd.weight"))
        // Row j of the qkv tensor is column j of Keel's [in, out] c_attn weight.
        let entry = model.table["transformer.h.0.attn.c_attn.weight"]!
        let weight = UnsafeBufferPointer(start: model.parameters.pointer + entry.offset, count: entry.count)
        let rows = (0..<192).flatMap { j in (0..<64).map { i in weight[i * 192 + j] } }
        XCTAssertEqual(file.bytes(of: "blk.0.attn_qkv.weight"),
                       Data(try QuantizedMatrix(quantizing: rows, rows: 192, columns: 64, format: .q8_0).bytes))
        // In a 4-bit format the head (here the tied token table) stays Q8_0, as llama.cpp's quantizer keeps it wider.
        let q4 = try GGUFExport.file(for: model, type: .q4_0, tokenizer: tokenizer)
        let types = Dictionary(uniqueKeysWithValues: q4.tensors.map { ($0.name, $0.type) })
        XCTAssertEqual([types["token_embd.weight"], types["output.weight"], types["blk.0.attn_qkv.weight"]], [8, 8, 2])
        let untied = try GGUFExport.file(for: try ModelFixtures.randomModel(
            ModelConfig(architecture: .llama, vocabSize: 40, layers: 1, heads: 2, width: 64, hiddenWidth: 64, maxLength: 16), seed: 3),
            type: .q4_1, tokenizer: tokenizer)
        let untiedTypes = Dictionary(uniqueKeysWithValues: untied.tensors.map { ($0.name, $0.type) })
        XCTAssertEqual([untiedTypes["token_embd.weight"], untiedTypes["output.weight"], untiedTypes["blk.0.attn_q.weight"]], [3, 8, 3])
    }
}

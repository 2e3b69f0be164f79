import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelTrain

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the model's logits for a text to a safetensors file.",
        discussion: """
            Output tensors: `tokens` (I32 [T]) and `logits` (F32 [T, V]). Used to compare Keel's forward \
            pass with other implementations (scripts/hf_check/check_export.py).
            """)

    @Option(name: .shortAndLong, help: "Run directory (newest valid checkpoint) or checkpoint directory.")
    var checkpoint: String

    @Option(help: "Text to score (encoded with the checkpoint's tokenizer).")
    var text: String

    @Option(name: .shortAndLong, help: "safetensors file to write.")
    var out: String

    func run() throws {
        let (model, tokenizer) = try loadCheckpoint(checkpoint)
        let tokens = tokenizer.encode(text)
        guard !tokens.isEmpty else { throw ValidationError("--text is empty") }
        guard tokens.count <= model.config.maxLength else {
            throw ValidationError("--text is \(tokens.count) tokens, more than the model's max_seq_len (\(model.config.maxLength))")
        }
        _ = tokens.withUnsafeBufferPointer { model.forward(inputs: $0.baseAddress!, targets: nil, batch: 1, length: tokens.count) }
        let v = model.config.vocabSize
        var logits = [Float](repeating: 0, count: tokens.count * v)
        for row in 0..<tokens.count {
            for (i, value) in model.logits(row: row).enumerated() { logits[row * v + i] = value }
        }
        try tokens.withUnsafeBytes { tokenBytes in
            try logits.withUnsafeBytes { logitBytes in
                try Safetensors.write([
                    TensorSlice(name: "tokens", dtype: .i32, shape: [tokens.count], bytes: tokenBytes),
                    TensorSlice(name: "logits", dtype: .f32, shape: [tokens.count, v], bytes: logitBytes),
                ], to: URL(fileURLWithPath: out))
            }
        }
        print("wrote \(out): \(tokens.count) tokens × \(v) logits")
    }
}

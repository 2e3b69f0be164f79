import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a checkpoint's weights to a llama.cpp format, ready to run.",
        discussion: """
            Writes DIR/model.gguf: the projections and embeddings in --type (halves, or blocks quantized as ggml's \
            reference quantizer does; beside a 4-bit type the output head in q8_0), the norms and biases in fp32, with \
            the checkpoint's tokenizer. generate, serve and eval run DIR \
            (or the file) on the quantized blocks; llama.cpp runs the file too. `keel eval --checkpoint RUN \
            --quantize TYPE` measures what the format costs (perplexity, KL divergence from fp32, top-1 agreement).
            """)

    @Option(name: .shortAndLong, help: "Run directory (newest valid checkpoint) or checkpoint directory.")
    var checkpoint: String

    @Option(help: "Format: f16, q8_0, q4_0, q4_1, q5_0 or q4_k.")
    var type: String

    @Option(name: .shortAndLong, help: "Directory to write model.gguf into (created).")
    var out: String

    func validate() throws {
        guard let weights = GGUFExport.WeightType(rawValue: type.lowercased()), weights.isQuantized else {
            throw ValidationError("--type must be one of f16, q8_0, q4_0, q4_1, q5_0, q4_k (got \(type))")
        }
    }

    func run() throws {
        let directory = URL(fileURLWithPath: out)
        let url = directory.appendingPathComponent(InferenceModel.quantizedFileName)
        if FileManager.default.fileExists(atPath: url.path) {
            throw KeelError("\(url.path) exists; choose another --out")
        }
        // A directory holding model.gguf runs that file: a run's own directory would no longer run its checkpoints.
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("checkpoints").path)
            || FileManager.default.fileExists(atPath: directory.appendingPathComponent(CheckpointManifest.fileName).path) {
            throw KeelError("\(out) holds a run or a checkpoint; choose another --out")
        }
        try AtomicFile.createDirectory(directory)
        let file = try writeGGUF(checkpoint: checkpoint, type: GGUFExport.WeightType(rawValue: type.lowercased())!, to: url)
        let quantized = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
        let values = file.tensors.reduce(0) { $0 + $1.count }
        print(String(format: "wrote %@: %d tensors, %@, %.1f MiB (fp32: %.1f MiB, %.2f bits a weight)", url.path, file.tensors.count,
                     type.lowercased(), Double(quantized) / 1_048_576, Double(4 * values) / 1_048_576,
                     Double(8 * quantized) / Double(values)))
    }
}

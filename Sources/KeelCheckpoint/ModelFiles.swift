import Foundation
import KeelCore
import KeelModel

/// Reading and writing a model's weights and shape.
///
/// Weights go to safetensors under their Hugging Face names, so the checkpoint's `model.safetensors` is
/// already what `transformers` reads; the shape goes to `model.json` in Keel's config keys.
public enum ModelFiles {
    public static let weightsFile = "model.safetensors"
    public static let configFile = "model.json"

    /// Writes every parameter of `model` to `url`.
    public static func writeWeights(of model: Transformer, to url: URL) throws {
        try writeWeights(model.table, model.parameters, to: url)
    }

    /// Writes every tensor of `table` from `parameters` (laid out by it) as safetensors.
    public static func writeWeights(_ table: ParameterTable, _ parameters: FloatBuffer, to url: URL) throws {
        try AtomicFile.write(to: url) { try writeWeights(table, parameters, to: $0) }
    }

    /// The same, to an open file (one of several written together).
    public static func writeWeights(_ table: ParameterTable, _ parameters: FloatBuffer, to handle: FileHandle) throws {
        let slices = table.entries.map {
            TensorSlice(name: $0.name, shape: $0.shape, floats: parameters.pointer + $0.offset)
        }
        try Safetensors.write(slices, metadata: ["format": "pt"], to: handle)
    }

    /// Writes the model's shape as JSON.
    public static func writeConfig(_ config: ModelConfig, to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(encoder.encode(config), to: url)
    }

    /// Reads a model shape written by `writeConfig`.
    public static func readConfig(from url: URL) throws -> ModelConfig {
        guard let data = try? Data(contentsOf: url) else { throw KeelError("\(url.path): cannot read model config") }
        do {
            let config = try JSONDecoder().decode(ModelConfig.self, from: data)
            try config.validate()
            return config
        } catch let error as KeelError {
            throw error
        } catch {
            throw KeelError("\(url.path): malformed model config: \(decodingProblem(error))")
        }
    }

    /// Resolves a user's `--checkpoint`: a checkpoint directory itself, or a run directory (or its
    /// `checkpoints/` folder), in which case the newest valid checkpoint — checked by the ranks of a group together
    /// with `share` and `agree` as `CheckpointStore.latestValid(in:share:agree:)` takes them.
    public static func resolveCheckpoint(_ path: String, share: (index: Int, count: Int) = (0, 1),
                                         agree: (_ candidate: URL, _ damaged: Bool) throws -> Bool = { $1 }) throws -> URL {
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw KeelError("checkpoint \(path): no such directory")
        }
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("manifest.json").path)
            || FileManager.default.fileExists(atPath: url.appendingPathComponent(configFile).path) {
            return url
        }
        for root in [url.appendingPathComponent("checkpoints"), url] {
            let found = try CheckpointStore.latestValid(in: root, share: share, agree: agree)
            if let checkpoint = found.checkpoint { return checkpoint }
            if let problem = found.problems.first { throw KeelError(problem.message) }
            if !CheckpointStore.list(root).isEmpty {
                throw KeelError("checkpoint \(path): no valid checkpoint in \(root.path) (the rank whose share of the files holds a fault names it)")
            }
        }
        throw KeelError("checkpoint \(path): no checkpoint found there")
    }
}

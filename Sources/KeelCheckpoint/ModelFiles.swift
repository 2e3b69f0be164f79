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
        let slices = table.entries.map {
            TensorSlice(name: $0.name, shape: $0.shape, floats: parameters.pointer + $0.offset)
        }
        try Safetensors.write(slices, metadata: ["format": "pt"], to: url)
    }

    /// Copies every parameter from `url` into `model`, checking names and shapes; with `range`, only the
    /// elements of the model's buffer in it (a ZeRO-3 rank's own share), leaving the rest untouched.
    public static func loadWeights(into model: Transformer, from url: URL, only range: Range<Int>? = nil) throws {
        let file = try SafetensorsFile(url: url)
        for entry in model.table.entries {
            let kept = entry.range.clamped(to: range ?? entry.range)
            guard !kept.isEmpty else { continue }
            let destination = model.parameters.pointer + kept.lowerBound
            let inEntry = (kept.lowerBound - entry.offset)..<(kept.upperBound - entry.offset)
            guard entry.shape != entry.wholeShape else {
                try file.copyFloats(entry.name, shape: entry.shape, elements: inEntry, to: destination)
                continue
            }
            // A tensor-parallel piece: cut from the whole tensor the file holds.
            let whole = FloatBuffer(count: entry.wholeShape.reduce(1, *)), piece = FloatBuffer(count: entry.count)
            try file.copyFloats(entry.name, shape: entry.wholeShape, to: whole.pointer)
            entry.split.copy(whole.pointer, shape: entry.wholeShape, piece.pointer, rank: entry.tensorRank)
            destination.update(from: piece.pointer + inEntry.lowerBound, count: inEntry.count)
        }
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

    /// Loads the model stored in checkpoint `directory` after verifying its checksums.
    public static func loadModel(fromCheckpoint directory: URL) throws -> Transformer {
        try CheckpointStore.verify(directory)
        let config = try readConfig(from: directory.appendingPathComponent(configFile))
        let model = try Transformer(config: config, seed: 0)
        try loadWeights(into: model, from: directory.appendingPathComponent(weightsFile))
        return model
    }

    /// Resolves a user's `--checkpoint`: a checkpoint directory itself, or a run directory (or its
    /// `checkpoints/` folder), in which case the newest valid checkpoint.
    public static func resolveCheckpoint(_ path: String) throws -> URL {
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
            let found = CheckpointStore.latestValid(in: root)
            if let checkpoint = found.checkpoint { return checkpoint }
            if let problem = found.problems.first { throw KeelError(problem) }
        }
        throw KeelError("checkpoint \(path): no checkpoint found there")
    }
}

import Foundation
import KeelCore
import KeelCheckpoint
import KeelData
import KeelModel

/// What a checkpoint records besides weights and optimizer moments (`state.json`).
///
/// The data position is `samplesConsumed` (the loader's position); the random state is the seed, since
/// the data order and every random stream are keyed by (seed, epoch or step, …).
public struct TrainingState: Codable, Equatable, Sendable {
    /// Optimizer steps completed.
    public var step: Int
    /// Training tokens consumed so far.
    public var tokens: Int
    /// Wall-clock seconds spent training so far (summed over resumed segments).
    public var elapsedSeconds: Double
    /// The run's seed; with `step` it determines every later batch and random draw.
    public var seed: UInt64
    /// Training windows consumed so far, by all ranks: the loader's position.
    public var samplesConsumed: Int
    /// The tokenizer the token ids belong to: "byte", or the tokenizer file's name beside this file.
    public var tokenizer: String
    /// The resolved configuration the run was started with, as TOML.
    public var config: String

    enum CodingKeys: String, CodingKey {
        case step, tokens, seed, tokenizer, config
        case elapsedSeconds = "elapsed_s", samplesConsumed = "samples_consumed"
    }

    /// Reads a `state.json`.
    public static func read(from url: URL) throws -> TrainingState {
        guard let data = try? Data(contentsOf: url) else { throw KeelError("\(url.path): cannot read") }
        do { return try JSONDecoder().decode(TrainingState.self, from: data) } catch {
            throw KeelError("\(url.path): malformed training state: \(decodingProblem(error))")
        }
    }
}

/// The tokenizer recorded in checkpoint (or run) directory `directory`: byte-level, or the tokenizer file
/// stored beside `state.json`.
public func loadCheckpointTokenizer(_ directory: URL) throws -> any TextTokenizer {
    let state = try TrainingState.read(from: directory.appendingPathComponent("state.json"))
    return try loadTokenizer(state.tokenizer == "byte" ? "byte" : directory.appendingPathComponent(state.tokenizer).path)
}

/// The model and tokenizer of a user's `--checkpoint`: a checkpoint directory, or a run directory (its
/// newest valid checkpoint). Shared by `sample`, `export` and `logits`.
public func loadCheckpoint(_ path: String) throws -> (model: Transformer, tokenizer: any TextTokenizer) {
    let directory = try ModelFiles.resolveCheckpoint(path)
    return (try ModelFiles.loadModel(fromCheckpoint: directory), try loadCheckpointTokenizer(directory))
}

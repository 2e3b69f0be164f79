import Foundation
import KeelCore

/// What a checkpoint records besides weights and optimizer moments (`state.json`).
///
/// The data position and the random state are both the step: the sampler and every random stream are
/// keyed by (seed, step, …), so they need no other state to continue exactly where they stopped.
public struct TrainingState: Codable, Equatable, Sendable {
    /// Optimizer steps completed.
    public var step: Int
    /// Training tokens consumed so far.
    public var tokens: Int
    /// Wall-clock seconds spent training so far (summed over resumed segments).
    public var elapsedSeconds: Double
    /// The run's seed; with `step` it determines every later batch and random draw.
    public var seed: UInt64
    /// Micro-batches drawn so far (step × grad_accum): the loader's position.
    public var batchesConsumed: Int
    /// The tokenizer the token ids belong to.
    public var tokenizer: String
    /// The resolved configuration the run was started with, as TOML.
    public var config: String

    enum CodingKeys: String, CodingKey {
        case step, tokens, seed, tokenizer, config
        case elapsedSeconds = "elapsed_s", batchesConsumed = "batches_consumed"
    }

    static func read(from url: URL) throws -> TrainingState {
        guard let data = try? Data(contentsOf: url) else { throw KeelError("\(url.path): cannot read") }
        guard let state = try? JSONDecoder().decode(TrainingState.self, from: data) else {
            throw KeelError("\(url.path): malformed training state")
        }
        return state
    }
}

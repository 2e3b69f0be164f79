import Foundation
import KeelCore

/// What a checkpoint records besides tensors: the step, the data position and the random state.
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
    /// The tokenizer the token ids belong to: "byte", or the tokenizer file's name in the checkpoint directory.
    public var tokenizer: String
    /// The resolved configuration the run was started with, as TOML.
    public var config: String
    /// The data the position `samplesConsumed` is in (nil in checkpoints written before Keel recorded it, and in
    /// weights-only checkpoints).
    public var data: DataFingerprint?

    public init(step: Int, tokens: Int, elapsedSeconds: Double, seed: UInt64, samplesConsumed: Int, tokenizer: String,
                config: String, data: DataFingerprint? = nil) {
        self.step = step
        self.tokens = tokens
        self.elapsedSeconds = elapsedSeconds
        self.seed = seed
        self.samplesConsumed = samplesConsumed
        self.tokenizer = tokenizer
        self.config = config
        self.data = data
    }

    enum CodingKeys: String, CodingKey {
        case step, tokens, seed, tokenizer, config, data
        case elapsedSeconds = "elapsed_s", samplesConsumed = "samples_consumed"
    }

    /// Reads the `state.json` of a checkpoint written before checkpoints were sharded.
    public static func read(from url: URL) throws -> TrainingState {
        guard let data = try? Data(contentsOf: url) else { throw KeelError("\(url.path): cannot read") }
        do { return try JSONDecoder().decode(TrainingState.self, from: data) } catch {
            throw KeelError("\(url.path): malformed training state: \(decodingProblem(error))")
        }
    }
}

import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelModel

/// A reward model: a transformer whose output projection is replaced by a scalar head — the reward of a sequence is
/// w · h, h the final norm's features at its last token (Hugging Face's `LlamaForSequenceClassification` with one
/// label, as TRL's `RewardTrainer` trains it; the head's tensor is `score.weight`, [1, d_model], without bias). The
/// head is kept beside the checkpoint's weights in `reward_head.safetensors`.
public final class RewardModel {
    public let transformer: Transformer
    /// w, d_model floats, and its gradient.
    public let score: FloatBuffer
    public let scoreGradient: FloatBuffer

    /// The file holding the head in a checkpoint directory.
    public static let headFile = "reward_head.safetensors"

    /// `transformer` with a new head drawn from N(0, 0.02²) by `seed` (Hugging Face's initializer range).
    public init(transformer: Transformer, seed: UInt64) {
        self.transformer = transformer
        score = FloatBuffer(count: transformer.config.width)
        scoreGradient = FloatBuffer(count: transformer.config.width)
        var random = RandomStream(seed: seed, key: 0x5C0E)
        for i in 0..<score.count { score.pointer[i] = 0.02 * random.nextNormal() }
    }

    /// The reward model saved in `checkpoint`: its weights and its head.
    public init(checkpoint: CheckpointReader) throws {
        transformer = try checkpoint.loadModel()
        let url = checkpoint.directory.appendingPathComponent(Self.headFile)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw KeelError("\(checkpoint.directory.path) is not a reward model: it has no \(Self.headFile) (train one with `keel reward train`)")
        }
        let file = try SafetensorsFile(url: url)
        score = FloatBuffer(count: transformer.config.width)
        scoreGradient = FloatBuffer(count: transformer.config.width)
        try file.convertFloats("score.weight", shape: [1, transformer.config.width], to: score.pointer)
    }

    /// The head as the bytes of a safetensors file.
    public func headFileContents() throws -> Data {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("keel-reward-head-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try Safetensors.write([TensorSlice(name: "score.weight", shape: [1, score.count], floats: score.pointer)], to: url)
        return try Data(contentsOf: url)
    }

    /// Each row's reward, and the features they were read from (valid until the next pass).
    func rewards(_ batch: SequenceBatch) -> (rewards: [Double], features: UnsafePointer<Float>) {
        let width = transformer.config.width
        var features: UnsafePointer<Float>!
        batch.withTokens { inputs, _ in
            features = transformer.features(inputs: inputs, batch: batch.rows, length: batch.length)
        }
        let rewards = (0..<batch.rows).map { row in
            let h = features + (row * batch.length + batch.lastPositions[row]) * width
            return (0..<width).reduce(0.0) { $0 + Double(h[$1]) * Double(score.pointer[$1]) }
        }
        return (rewards, features)
    }

    /// The rewards of each pair's chosen and rejected responses, `batch` pairs at a time (no gradients).
    public func rewards(of pairs: [PreferencePair], batch: Int, maximumLength: Int, padding: Int32) -> [(chosen: Double, rejected: Double)] {
        stride(from: 0, to: pairs.count, by: batch).flatMap { start in
            let chunk = Array(pairs[start..<min(start + batch, pairs.count)])
            let values = rewards(of: chunk.map(\.chosen) + chunk.map(\.rejected), batch: 2 * chunk.count, maximumLength: maximumLength,
                                 padding: padding)
            return (0..<chunk.count).map { (values[$0], values[chunk.count + $0]) }
        }
    }

    /// The reward of each sequence (a prompt and its completion), `batch` at a time (no gradients).
    public func rewards(of sequences: [SupervisedExample], batch: Int, maximumLength: Int, padding: Int32) -> [Double] {
        stride(from: 0, to: sequences.count, by: batch).flatMap { start in
            rewards(SequenceBatch(sequences: Array(sequences[start..<min(start + batch, sequences.count)]),
                                  maximumLength: maximumLength, padding: padding, layout: .wholeSequences)).rewards
        }
    }
}

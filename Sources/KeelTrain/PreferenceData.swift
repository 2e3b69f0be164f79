import Foundation
import KeelCore
import KeelData

/// Preference pairs for DPO and reward models: JSONL files in TRL's preference format (`SupervisedFormatter.pair`),
/// rendered with the chat template beside the tokenizer as chat data is (`ChatData`), every 1/fraction-th pair held
/// out for validation, and the pairs that cannot be learnt from in rows of `length` positions dropped: for DPO those
/// whose prompt fills `length + 1` tokens, for a reward model (which reads a sequence's score at its last token) those
/// with a sequence longer than `length`, as TRL drops them (`SequenceBatch.fits`). A line that is not a pair stops with
/// the file and line named.
public struct PreferenceData {
    public let train: [PreferencePair]
    public let validation: [PreferencePair]
    /// A line for the log: files, pairs, what was dropped.
    public let summary: String

    /// `lengthName` names the setting `length` comes from in messages (`keel reward eval`'s `--seq-len`).
    public init(paths: [String], tokenizer: any TextTokenizer, tokenizerPath: String, length: Int,
                validationFraction: Double, forRewardModel: Bool = false, lengthName: String = "training.seq_len") throws {
        let formatter = try ChatData.formatter(tokenizer: tokenizer, tokenizerPath: tokenizerPath, paths: paths)
        let pairs = try ChatData.records(paths, kind: "preference pairs", formatter.pair(json:))
        let fitting = pairs.filter {
            SequenceBatch.fits($0, maximumLength: length, layout: forRewardModel ? .wholeSequences : .nextTokens)
        }
        let why = forRewardModel ? "a sequence is longer than \(lengthName) (\(length)), and a reward model reads it whole"
            : "the prompt fills \(lengthName) + 1 (\(length + 1)) tokens"
        guard !fitting.isEmpty else {
            throw KeelError("every pair is dropped: \(why)")
        }
        (train, validation) = ChatData.split(fitting, validationFraction: validationFraction)
        let dropped = pairs.count - fitting.count
        summary = "\(paths.count) preference file\(paths.count == 1 ? "" : "s"), \(train.count) + \(validation.count) pairs"
            + ChatData.templateNote(tokenizerPath)
            + (dropped > 0 ? "; \(dropped) pair\(dropped == 1 ? "" : "s") dropped: \(why)" : "")
    }
}

/// The order training pairs are read in: epoch after epoch, each in an order of its own (a permutation seeded by
/// `seed` and the epoch) or the files' order. Step s (from 1) reads `perStep` pairs from position (s − 1) · perStep;
/// within it, micro-batch k of data-parallel rank r takes `batch` pairs from (k · ranks + r) · batch.
struct PairOrder {
    let count: Int
    let seed: UInt64
    let shuffles: Bool

    /// The order of `count` training items (`kind`: "pairs", "prompts"), seeded by `seed` (default `training.seed`);
    /// refuses fewer than one step takes — `training.batch_size × training.grad_accum`, times the data-parallel
    /// `ranks` when there are any.
    init(count: Int, kind: String, training: TrainConfig.TrainingSettings, ranks: Int?, seed: UInt64? = nil, shuffles: Bool) throws {
        let perStep = training.batchSize * training.gradientAccumulation * (ranks ?? 1)
        guard count >= perStep else {
            throw KeelError("\(count) training \(kind) are fewer than one step's \(perStep) (training.batch_size × training.grad_accum\(ranks == nil ? "" : " × processes"))")
        }
        self.count = count
        self.seed = seed ?? training.seed
        self.shuffles = shuffles
    }

    /// The pairs micro-batch `microBatch` of step `step` gives this rank.
    func indices(step: Int, microBatch: Int, batch: Int, accumulation: Int, rank: Int, ranks: Int) -> [Int] {
        let first = (step - 1) * batch * accumulation * ranks + (microBatch * ranks + rank) * batch
        return (first..<(first + batch)).map { position in
            let epoch = position / count, index = position % count
            return shuffles ? WindowPermutation(count: count, seed: seed, epoch: epoch)(index) : index
        }
    }
}

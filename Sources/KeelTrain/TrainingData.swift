import Foundation
import KeelCore
import KeelData

/// The tokenizer and the training and validation windows of a run, from either a prepared dataset
/// (`data.dataset`: shards + manifest from `keel data prepare`) or raw files tokenised in memory
/// (`data.paths`).
struct TrainingData {
    let tokenizer: any TextTokenizer
    /// The tokenizer file to copy beside the run and into checkpoints (nil for byte-level).
    let tokenizerFile: URL?
    let train: TokenWindows
    let validation: TokenWindows
    let summary: String

    init(config: TrainConfig) throws {
        let length = config.training.sequenceLength
        let tooLittleValidation: String
        if let dataset = config.data.dataset {
            let directory = URL(fileURLWithPath: dataset)
            let manifest = try ShardManifest.read(from: directory)
            if manifest.tokenizer == "byte" {
                tokenizer = ByteTokenizer()
                tokenizerFile = nil
            } else {
                let file = directory.appendingPathComponent(manifest.tokenizer)
                tokenizer = try loadTokenizer(file.path)
                tokenizerFile = file
            }
            guard manifest.vocabSize <= config.model.vocabSize else {
                throw KeelError("config: model.vocab_size (\(config.model.vocabSize)) is smaller than the dataset's vocabulary (\(manifest.vocabSize))")
            }
            func windows(_ split: ShardManifest.Split) throws -> TokenWindows {
                let shards = try manifest.openShards(split, in: directory)
                for shard in shards { try shard.checkTokens(below: config.model.vocabSize) }
                return TokenWindows(segments: shards.map { .shard($0) }, length: length)
            }
            train = try windows(manifest.train)
            validation = try windows(manifest.val)
            summary = "dataset \(dataset): \(manifest.train.documents) + \(manifest.val.documents) documents"
            tooLittleValidation = "prepare the dataset again with a larger --val-fraction"
        } else {
            tokenizer = try loadTokenizer(config.data.tokenizer)
            tokenizerFile = config.data.tokenizer == "byte" ? nil : URL(fileURLWithPath: config.data.tokenizer)
            guard tokenizer.vocabSize <= config.model.vocabSize else {
                throw KeelError("config: model.vocab_size (\(config.model.vocabSize)) is smaller than the tokenizer's vocabulary (\(tokenizer.vocabSize))")
            }
            let corpus = try TokenCorpus(paths: config.data.paths, tokenizer: tokenizer, vocabSize: config.model.vocabSize,
                                         validationFraction: config.data.validationFraction)
            train = TokenWindows(segments: [.memory(corpus.train)], length: length)
            validation = TokenWindows(segments: [.memory(corpus.validation)], length: length)
            summary = "\(corpus.fileCount) files"
            tooLittleValidation = "raise data.val_fraction"
        }
        guard train.count >= config.training.batchSize else {
            throw KeelError("data: the training split has \(train.tokenCount) tokens, too few for one batch of \(config.training.batchSize) sequences of \(length + 1) tokens")
        }
        guard validation.count > 0 else {
            throw KeelError("data: the validation split has \(validation.tokenCount) tokens, fewer than training.seq_len + 1 (\(length + 1)); \(tooLittleValidation)")
        }
    }

    /// Cross-entropy of (up to 1M) validation tokens under add-one-smoothed frequencies of (up to 20M)
    /// training tokens: the loss of a model that ignores context, which a trained transformer must beat.
    func unigramLoss(vocabSize: Int) -> Double {
        var counts = [Double](repeating: 1, count: vocabSize)
        for token in train.leadingTokens(limit: 20_000_000) { counts[Int(token)] += 1 }
        let total = counts.reduce(0, +)
        let held = validation.leadingTokens(limit: 1_000_000)
        var loss = 0.0
        for token in held { loss -= Foundation.log(counts[Int(token)] / total) }
        return loss / Double(held.count)
    }
}

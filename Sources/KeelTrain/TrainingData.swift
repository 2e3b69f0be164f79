import Foundation
import KeelCheckpoint
import KeelCore
import KeelData

/// The tokenizer and the training and validation windows of a run, from either a prepared dataset
/// (`data.dataset`: shards + manifest from `keel data prepare`) or raw files tokenised in memory
/// (`data.paths`).
struct TrainingData {
    let tokenizer: any TextTokenizer
    /// The tokenizer file to copy beside the run and into checkpoints (nil for byte-level).
    let tokenizerFile: URL?
    let train: any TrainingWindows
    let validation: any TrainingWindows
    let summary: String
    /// The size of each split as the log reports it: its tokens for pre-training (the whole stream, of which the
    /// windows predict all but each window's first), the targets the loss counts for chat data.
    let trainTargets: Int, validationTargets: Int

    /// The token the run's tokenizer puts before every text, if any (`TokenizerSettings.beginningOfTextToken(in:)`):
    /// each document of `data.paths` starts with it, as each of a dataset prepared with the tokenizer does (its
    /// manifest's `text_start`; datasets prepared before Keel wrote it have none), and so does a sample's prompt.
    let textStart: Int32?

    private static func textStart(of tokenizer: any TextTokenizer, file: URL?) -> Int32? {
        file.flatMap { TokenizerSettings(besides: $0.path).beginningOfTextToken(in: tokenizer) }
    }

    /// `share` and `agree`: the ranks of a job verify a prepared dataset's shards together, each a share of them
    /// (`ShardManifest.openShards`); `agree` gets whether this rank found a fault and returns whether any did.
    init(config: TrainConfig, share: (index: Int, count: Int) = (0, 1), agree: (_ faulty: Bool) throws -> Bool = { $0 }) throws {
        let length = config.training.sequenceLength
        let tooLittleValidation: String
        if !config.data.chat.isEmpty {
            tokenizer = try loadTokenizer(config.data.tokenizer)
            tokenizerFile = config.data.tokenizer == "byte" ? nil : URL(fileURLWithPath: config.data.tokenizer)
            textStart = Self.textStart(of: tokenizer, file: tokenizerFile)
            guard tokenizer.vocabSize <= config.model.vocabSize else {
                throw KeelError("config: model.vocab_size (\(config.model.vocabSize)) is smaller than the tokenizer's vocabulary (\(tokenizer.vocabSize))")
            }
            let chat = try ChatData(paths: config.data.chat, tokenizer: tokenizer, tokenizerPath: config.data.tokenizer,
                                    length: length, validationFraction: config.data.validationFraction)
            guard chat.train.trainedTargets > 0 else {
                throw KeelError("data.chat: no token the loss counts: the examples are cut (at training.seq_len + 1 = \(length + 1) tokens) before the assistant writes; raise training.seq_len")
            }
            train = chat.train
            validation = chat.validation
            trainTargets = chat.train.trainedTargets
            validationTargets = chat.validation.trainedTargets
            summary = chat.summary
            tooLittleValidation = "raise data.val_fraction, or add conversations"
        } else if let dataset = config.data.dataset {
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
            textStart = Self.textStart(of: tokenizer, file: tokenizerFile)
            guard manifest.vocabSize <= config.model.vocabSize else {
                throw KeelError("config: model.vocab_size (\(config.model.vocabSize)) is smaller than the dataset's vocabulary (\(manifest.vocabSize))")
            }
            let documentEnd = config.data.documentMasking ? tokenizer.endOfText : nil
            func windows(_ split: ShardManifest.Split, _ name: String) throws -> TokenWindows {
                var shards: [TokenShard] = [], fault: Error?
                do { shards = try manifest.openShards(split, in: directory, share: share, tokensBelow: config.model.vocabSize) } catch {
                    fault = error
                }
                if try agree(fault != nil) {
                    throw fault ?? KeelError("data: a shard of \(dataset)'s \(name) split is damaged (the rank that verified it names it)")
                }
                return TokenWindows(segments: shards.map { .shard($0) }, length: length, documentEnd: documentEnd)
            }
            let (trainWindows, validationWindows) = (try windows(manifest.train, "train"), try windows(manifest.val, "val"))
            train = trainWindows
            validation = validationWindows
            trainTargets = trainWindows.tokenCount
            validationTargets = validationWindows.tokenCount
            summary = "dataset \(dataset): \(manifest.train.documents) + \(manifest.val.documents) documents"
                + Self.shardEnds(trainWindows)
                + (textStart.map { start in
                    manifest.textStart == start ? ""
                        : "; note: its documents do not start with token \(start), which its tokenizer puts before every text (it was prepared before Keel wrote text_start): prepare it again to train on text as the tokenizer reads it"
                } ?? "")
                // The split is the dataset's own; a fraction other than the default was meant for something.
                + (config.data.validationFraction == TrainConfig.defaultValidationFraction ? ""
                    : "; note: data.val_fraction (\(config.data.validationFraction)) does not apply to a prepared dataset, whose split `keel data prepare --val-fraction` made")
            tooLittleValidation = "prepare the dataset again with a larger --val-fraction"
            guard trainWindows.count >= config.training.batchSize || trainWindows.tokenCount < (length + 1) * config.training.batchSize else {
                throw KeelError("data: the training split's shards (the longest \(trainWindows.longestSegment) tokens) are too short for \(config.training.batchSize) windows of \(length + 1) tokens, which never cross a shard: prepare the dataset again with a larger --shard-tokens")
            }
        } else {
            tokenizer = try loadTokenizer(config.data.tokenizer)
            tokenizerFile = config.data.tokenizer == "byte" ? nil : URL(fileURLWithPath: config.data.tokenizer)
            textStart = Self.textStart(of: tokenizer, file: tokenizerFile)
            guard tokenizer.vocabSize <= config.model.vocabSize else {
                throw KeelError("config: model.vocab_size (\(config.model.vocabSize)) is smaller than the tokenizer's vocabulary (\(tokenizer.vocabSize))")
            }
            let corpus = try TokenCorpus(paths: config.data.paths, tokenizer: tokenizer,
                                         textStart: textStart,
                                         vocabSize: config.model.vocabSize, validationFraction: config.data.validationFraction)
            let documentEnd = config.data.documentMasking ? tokenizer.endOfText : nil
            train = TokenWindows(segments: [.memory(corpus.train)], length: length, documentEnd: documentEnd)
            validation = TokenWindows(segments: [.memory(corpus.validation)], length: length, documentEnd: documentEnd)
            trainTargets = corpus.train.count
            validationTargets = corpus.validation.count
            summary = "\(corpus.fileCount) files"
            tooLittleValidation = "raise data.val_fraction"
        }
        // A corpus is counted in tokens, chat data in the windows its examples fill.
        func size(_ windows: any TrainingWindows) -> String {
            (windows as? TokenWindows).map { "\($0.tokenCount) tokens" } ?? "\(windows.count) windows"
        }
        guard train.count >= config.training.batchSize else {
            throw KeelError("data: the training split has \(size(train)), too few for one batch of \(config.training.batchSize) sequences of \(length + 1) tokens")
        }
        guard validation.count > 0 else {
            throw KeelError("data: the validation split has \(size(validation)), fewer than training.seq_len + 1 (\(length + 1)) tokens; \(tooLittleValidation)")
        }
        // Held-out conversations cut before the assistant writes count nothing: their loss would read 0, a perfect score.
        guard validationTargets > 0 else {
            throw KeelError("data.chat: the validation split holds no token the loss counts: its examples are cut (at training.seq_len + 1 = \(length + 1) tokens) before the assistant writes; raise training.seq_len, or \(tooLittleValidation)")
        }
    }

    /// What a checkpoint records of this data, to refuse a resume on other data (`DataFingerprint`): the counts of
    /// windows, their length, whether they keep documents apart (chat data always does, whatever
    /// `data.document_masking` says), the tokenizer file (`tokenizer`, nil for bytes), and the tokens of
    /// `DataFingerprint.sampledWindows` windows of each split, a few reads however large the data.
    func fingerprint(tokenizer file: Data?) -> DataFingerprint {
        var hash = XXH64()
        for windows in [train, validation] {
            let length = windows.length, count = windows.count
            var inputs = [Int32](repeating: 0, count: length), targets = inputs, documents = inputs
            let last = DataFingerprint.sampledWindows - 1
            var previous = -1
            for i in 0...last {
                let index = count <= 1 ? 0 : i * (count - 1) / last
                guard index != previous, index < count else { continue }
                previous = index
                // Windows that do not pack documents leave `documents` alone.
                windows.copy(window: index, inputs: &inputs, targets: &targets, documents: &documents)
                for tokens in windows.packsDocuments ? [inputs, targets, documents] : [inputs, targets] {
                    tokens.withUnsafeBytes { hash.update($0) }
                }
            }
        }
        return DataFingerprint(trainWindows: train.count, validationWindows: validation.count, windowLength: train.length,
                               documentMasking: train.packsDocuments,
                               tokenizer: file.map { bytes in String(bytes.withUnsafeBytes { XXH64.hash($0) }, radix: 16) } ?? "byte",
                               windows: String(hash.digest(), radix: 16))
    }

    /// Cross-entropy of (up to 1M) validation tokens under add-one-smoothed frequencies of (up to 20M)
    /// training tokens: the loss of a model that ignores context, which a trained transformer must beat (nil for
    /// chat data, whose loss counts only the assistant's tokens).
    func unigramLoss(vocabSize: Int) -> Double? {
        guard let train = train as? TokenWindows, let validation = validation as? TokenWindows else { return nil }
        var counts = [Double](repeating: 1, count: vocabSize)
        for token in train.leadingTokens(limit: 20_000_000) { counts[Int(token)] += 1 }
        let total = counts.reduce(0, +)
        let held = validation.leadingTokens(limit: 1_000_000)
        var loss = 0.0
        for token in held { loss -= Foundation.log(counts[Int(token)] / total) }
        return loss / Double(held.count)
    }

    /// A note for the data summary when the ends of a split's shards hold more than 1% of its tokens: windows never
    /// cross a shard, so what follows a shard's last whole window (and its first token) is never a target.
    static func shardEnds(_ windows: TokenWindows) -> String {
        let share = Double(windows.unreachedCount) / Double(max(1, windows.tokenCount))
        // One shard holding the split loses less than a window: the advice is for many short shards.
        guard share > 0.01, windows.longestSegment < windows.tokenCount else { return "" }
        return String(format: " (%.1f%% of the training tokens lie past the last whole window of their shard, never a target: prepare with a larger --shard-tokens)", share * 100)
    }
}

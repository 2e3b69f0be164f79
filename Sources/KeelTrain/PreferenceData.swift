import Foundation
import KeelCore
import KeelData

/// Preference pairs for DPO and reward models: JSONL files in TRL's preference format (`SupervisedFormatter.pair`),
/// rendered with the chat template beside the tokenizer as chat data is (`ChatData`), every 1/fraction-th pair held
/// out for validation, and the pairs that leave either response nothing within `length + 1` tokens dropped (their
/// prompt fills the window). A line that is not a pair stops with the file and line named.
public struct PreferenceData {
    public let train: [PreferencePair]
    public let validation: [PreferencePair]
    /// A line for the log: files, pairs, what was dropped.
    public let summary: String

    public init(paths: [String], tokenizer: any TextTokenizer, tokenizerPath: String, length: Int,
                validationFraction: Double) throws {
        let formatter = try ChatData.formatter(tokenizer: tokenizer, tokenizerPath: tokenizerPath, paths: paths)
        let pairs = try ChatData.records(paths, kind: "preference pairs", formatter.pair(json:))
        let fitting = pairs.filter { PreferenceBatch.fits($0, maximumLength: length) }
        guard !fitting.isEmpty else {
            throw KeelError("every pair's prompt fills training.seq_len + 1 (\(length + 1)) tokens: no response is left to learn from")
        }
        (train, validation) = ChatData.split(fitting, validationFraction: validationFraction)
        let dropped = pairs.count - fitting.count
        summary = "\(paths.count) preference file\(paths.count == 1 ? "" : "s"), \(train.count) + \(validation.count) pairs"
            + ChatData.templateNote(tokenizerPath)
            + (dropped > 0 ? "; \(dropped) pair\(dropped == 1 ? "" : "s") dropped: the prompt fills training.seq_len + 1 tokens" : "")
    }
}

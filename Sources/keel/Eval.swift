import ArgumentParser
import Foundation
import KeelCheckpoint
import KeelCore
import KeelTrain

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss and perplexity of a checkpoint on a dataset or on text files, without training.",
        discussion: """
            The data is cut into consecutive windows of --seq-len tokens (every token is predicted once, \
            from at most --seq-len tokens of context), as the training loop's validation pass does; the \
            result is the mean loss per predicted token and its exponential, the perplexity. Files are read \
            as data.paths reads them (text, JSONL with a "text" field, .gz/.zst) and encoded with the \
            checkpoint's tokenizer; a dataset must have been prepared with that tokenizer.
            """)

    @Option(name: .shortAndLong, help: "Run directory (newest valid checkpoint) or checkpoint directory.")
    var checkpoint: String

    @Option(help: "Prepared dataset directory (keel data prepare) to evaluate on.")
    var dataset: String?

    @Option(help: "The dataset's split: val or train.")
    var split = "val"

    @Argument(help: "Text, JSONL or compressed files or directories to evaluate on (instead of --dataset).")
    var files: [String] = []

    @Option(help: "Tokens per window (default: the model's max_seq_len).")
    var seqLen: Int?

    @Option(help: "Windows per forward pass.")
    var batchSize = 8

    @Option(help: "Evaluate only the first N windows (0: all).")
    var maxWindows = 0

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func validate() throws {
        guard (dataset == nil) != files.isEmpty else { throw ValidationError("give either --dataset DIR or files to evaluate on") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        guard maxWindows >= 0 else { throw ValidationError("--max-windows must not be negative") }
        if let seqLen, seqLen <= 0 { throw ValidationError("--seq-len must be positive") }
    }

    func run() throws {
        let reader = try CheckpointReader(resolving: checkpoint)
        let model = try reader.loadModel(), tokenizer = try loadCheckpointTokenizer(reader)
        let length = seqLen ?? model.config.maxLength
        guard length <= model.config.maxLength else {
            throw KeelError("--seq-len \(length) is longer than the model's max_seq_len (\(model.config.maxLength))")
        }
        let vocabulary = model.config.vocabSize
        let windows = try dataset.map {
            try Evaluation.windows(dataset: URL(fileURLWithPath: $0), split: split, checkpoint: reader, vocabSize: vocabulary,
                                   length: length)
        } ?? Evaluation.windows(files: files, tokenizer: tokenizer, vocabSize: vocabulary, length: length)
        let count = maxWindows > 0 ? min(maxWindows, windows.count) : windows.count
        guard count > 0 else {
            throw KeelError("eval: the data has \(windows.tokenCount) tokens, fewer than --seq-len + 1 (\(length + 1))")
        }
        let source = dataset.map { "\($0) (\(split))" } ?? files.joined(separator: ", ")
        FileHandle.standardError.write(Data("eval: \(reader.directory.path) on \(source): \(count) windows of \(length) tokens\n".utf8))
        var reported = 0
        let sum = Evaluation.lossSum(of: model, on: windows, count: count, batch: batchSize) { done in
            guard done * 10 / count > reported * 10 / count, done < count else { return }
            reported = done
            FileHandle.standardError.write(Data("eval: \(done)/\(count) windows\n".utf8))
        }
        let loss = Float(sum / Double(count))
        let perplexity = exp(Double(loss))
        if json {
            print("{\"loss\": \(loss), \"perplexity\": \(perplexity), \"windows\": \(count), \"seq_len\": \(length), \"tokens\": \(count * length)}")
        } else {
            print(String(format: "loss %.4f  perplexity %.2f  (%d windows of %d tokens: %d predicted tokens)",
                         Double(loss), perplexity, count, length, count * length))
        }
    }
}

import Foundation
import KeelCheckpoint
import KeelCore
import KeelData
import KeelModel

/// The loss of a model on windows of a token stream, without training: `keel eval`, and the way `Trainer`'s
/// validation pass deals the windows out.
public enum Evaluation {
    /// The windows of 0..<count that a rank takes: batches of `batch` consecutive windows, dealt to `ranks`
    /// ranks in turn (rank r takes the batches that start at r·batch, (r + ranks)·batch, …); the last may be
    /// shorter.
    public static func batches(count: Int, batch: Int, rank: Int = 0, ranks: Int = 1) -> [Range<Int>] {
        precondition(batch > 0)
        return stride(from: rank * batch, to: count, by: batch * ranks).map { $0..<min($0 + batch, count) }
    }

    /// Copies the windows `range` of `windows` into consecutive rows of `inputs` and `targets`.
    static func copy(_ range: Range<Int>, of windows: any TrainingWindows, inputs: UnsafeMutablePointer<Int32>,
                     targets: UnsafeMutablePointer<Int32>, documents: UnsafeMutablePointer<Int32>? = nil) {
        for (row, window) in range.enumerated() {
            windows.copy(window: window, inputs: inputs + row * windows.length, targets: targets + row * windows.length,
                         documents: documents.map { $0 + row * windows.length })
        }
    }

    /// Σ over windows 0..<count of each window's mean next-token loss, for the windows this rank takes
    /// (`batches`). Dividing the sum over all ranks by `count` gives the mean loss per token, since every
    /// window has `windows.length` targets. Windows that keep documents apart (`TokenWindows.documentEnd`) are run
    /// so, as training ran them. `progress` gets the windows done so far.
    public static func lossSum(
        of model: Transformer, on windows: TokenWindows, count: Int, batch: Int, rank: Int = 0, ranks: Int = 1,
        progress: (Int) -> Void = { _ in }
    ) -> Double {
        precondition(count <= windows.count)
        let length = windows.length
        var inputs = [Int32](repeating: 0, count: batch * length), targets = inputs, documents = inputs
        var total = 0.0
        for range in batches(count: count, batch: batch, rank: rank, ranks: ranks) {
            let loss = inputs.withUnsafeMutableBufferPointer { i in
                targets.withUnsafeMutableBufferPointer { t in
                    documents.withUnsafeMutableBufferPointer { d in
                        let kept = windows.packsDocuments ? d.baseAddress! : nil
                        copy(range, of: windows, inputs: i.baseAddress!, targets: t.baseAddress!, documents: kept)
                        return model.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: range.count, length: length,
                                             documents: kept.map { UnsafePointer($0) })
                    }
                }
            }
            total += Double(loss) * Double(range.count)
            progress(range.upperBound)
        }
        return total
    }
}

extension Evaluation {
    /// Windows of `length` tokens over one split ("train" or "val") of a prepared dataset, which must have
    /// been tokenised with the checkpoint's tokenizer and hold only ids below `vocabSize`; with `documentEnd`, each
    /// keeping its documents apart (`data.document_masking`).
    public static func windows(dataset: URL, split: String, checkpoint: CheckpointReader, vocabSize: Int, length: Int,
                               documentEnd: Int32? = nil) throws -> TokenWindows {
        let manifest = try ShardManifest.read(from: dataset)
        let state = checkpoint.state
        let datasetTokenizer = manifest.tokenizer == "byte" ? nil : try Data(contentsOf: dataset.appendingPathComponent(manifest.tokenizer))
        let sameTokenizer = try datasetTokenizer == checkpoint.tokenizerContents()
        guard sameTokenizer else {
            throw KeelError("eval: \(dataset.path) was tokenised with \(manifest.tokenizer), not with the checkpoint's tokenizer (\(state.tokenizer)): its ids would mean other text")
        }
        let chosen: ShardManifest.Split
        switch split {
        case "val": chosen = manifest.val
        case "train": chosen = manifest.train
        default: throw KeelError("eval: --split must be \"val\" or \"train\" (got \"\(split)\")")
        }
        let shards = try manifest.openShards(chosen, in: dataset, tokensBelow: vocabSize)
        return TokenWindows(segments: shards.map { .shard($0) }, length: length, documentEnd: documentEnd)
    }

    /// Windows of `length` tokens over text, JSONL or compressed files (read as `data.paths` reads them),
    /// encoded with `tokenizer`, each document after `textStart` when given, as training reads them (llama-perplexity
    /// too tokenizes its text with the BOS token first for a model that asks for one, so its windows start one token
    /// later).
    public static func windows(files: [String], tokenizer: any TextTokenizer, textStart: Int32?, vocabSize: Int,
                               length: Int, documentEnd: Int32? = nil) throws -> TokenWindows {
        let corpus = try TokenCorpus(paths: files, tokenizer: tokenizer, textStart: textStart, vocabSize: vocabSize,
                                     validationFraction: 0)
        return TokenWindows(segments: [.memory(corpus.train)], length: length, documentEnd: documentEnd)
    }

    /// Whether the run whose settings are `config` (a checkpoint's `TrainingState.config`) kept documents apart
    /// (`data.document_masking`); false for settings that do not say, or cannot be read.
    public static func trainedWithDocumentMasking(_ config: String) -> Bool {
        guard var values = try? ConfigValues(toml: config, origin: "config") else { return false }
        return (try? values.bool("data.document_masking", false)) ?? false
    }
}

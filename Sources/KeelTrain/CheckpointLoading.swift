import Foundation
import KeelCore
import KeelCheckpoint
import KeelData
import KeelModel

/// The tokenizer recorded in checkpoint `checkpoint`: byte-level, or the tokenizer file stored in its directory.
/// Refused when it has more ids than the model's vocabulary: the model has no row for the others, and a text that
/// encodes to one (a special token's spelling in a served prompt) would index past its embedding.
public func loadCheckpointTokenizer(_ checkpoint: CheckpointReader) throws -> any TextTokenizer {
    let tokenizer = try loadTokenizer(checkpoint.tokenizerPath)
    guard tokenizer.vocabSize <= checkpoint.model.vocabSize else {
        throw KeelError("\(checkpoint.directory.path): its tokenizer (\(URL(fileURLWithPath: checkpoint.tokenizerPath).lastPathComponent)) has \(tokenizer.vocabSize) ids, more than the model's vocab_size \(checkpoint.model.vocabSize)")
    }
    return tokenizer
}

/// The model and tokenizer of a user's `--checkpoint`: a checkpoint directory, or a run directory (its
/// newest valid checkpoint), in any layout it was written in. Shared by `sample`, `export`, `eval` and `logits`.
public func loadCheckpoint(_ path: String) throws -> (model: Transformer, tokenizer: any TextTokenizer) {
    let checkpoint = try CheckpointReader(resolving: path)
    return (try checkpoint.loadModel(), try loadCheckpointTokenizer(checkpoint))
}

import Foundation
import KeelCore
import KeelCheckpoint
import KeelData
import KeelModel

/// The tokenizer recorded in checkpoint `checkpoint`: byte-level, or the tokenizer file stored in its directory.
public func loadCheckpointTokenizer(_ checkpoint: CheckpointReader) throws -> any TextTokenizer {
    try loadTokenizer(checkpoint.tokenizerPath)
}

/// The model and tokenizer of a user's `--checkpoint`: a checkpoint directory, or a run directory (its
/// newest valid checkpoint), in any layout it was written in. Shared by `sample`, `export`, `eval` and `logits`.
public func loadCheckpoint(_ path: String) throws -> (model: Transformer, tokenizer: any TextTokenizer) {
    let checkpoint = try CheckpointReader(resolving: path)
    return (try checkpoint.loadModel(), try loadCheckpointTokenizer(checkpoint))
}

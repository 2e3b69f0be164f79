import KeelData
import KeelKernels

/// A micro-batch of preference pairs as the model reads it, as TRL's `DPOTrainer` lays it out: the B chosen
/// sequences in rows 0..<B, the B rejected ones in rows B..<2B, each the prompt and its completion, cut to at most
/// `length + 1` tokens (keeping the start) and padded at the end to the longest row. A row's targets are the next
/// tokens of its completion (`CrossEntropy.ignored` elsewhere), so minus the sum of a row's per-position losses is
/// the completion's log-probability.
struct PreferenceBatch {
    /// Rows × `length` token ids, and targets.
    var inputs: [Int32]
    var targets: [Int32]
    /// Positions per row: the longest row's tokens minus one.
    let length: Int
    /// Rows: twice the pairs.
    let rows: Int
    /// Each row's completion tokens counted by the loss.
    let completionLengths: [Int]

    init(_ pairs: [PreferencePair], maximumLength: Int, padding: Int32) {
        let sequences = pairs.map(\.chosen) + pairs.map(\.rejected)
        let cut = sequences.map { min($0.tokens.count, maximumLength + 1) }
        length = max(1, (cut.max() ?? 1) - 1)
        rows = sequences.count
        inputs = [Int32](repeating: padding, count: rows * length)
        targets = [Int32](repeating: CrossEntropy.ignored, count: rows * length)
        var lengths: [Int] = []
        for (row, sequence) in sequences.enumerated() {
            var counted = 0
            for t in 0..<max(0, cut[row] - 1) {
                inputs[row * length + t] = sequence.tokens[t]
                if sequence.trained[t + 1] {
                    targets[row * length + t] = sequence.tokens[t + 1]
                    counted += 1
                }
            }
            lengths.append(counted)
        }
        completionLengths = lengths
    }

    /// Whether a pair keeps completion tokens of both responses within `maximumLength + 1` tokens (one that does not
    /// teaches nothing: TRL drops pairs whose prompt fills its `max_length`).
    static func fits(_ pair: PreferencePair, maximumLength: Int) -> Bool {
        [pair.chosen, pair.rejected].allSatisfy { $0.trained.prefix(maximumLength + 1).dropFirst().contains(true) }
    }

    /// Runs `body` with the inputs and targets.
    func withTokens(_ body: (UnsafePointer<Int32>, UnsafePointer<Int32>) -> Void) {
        inputs.withUnsafeBufferPointer { inputs in
            targets.withUnsafeBufferPointer { targets in body(inputs.baseAddress!, targets.baseAddress!) }
        }
    }

    /// Each row's log-probability of its completion: minus the sum of its positions' losses (`Transformer.rowLosses`).
    func logProbabilities(_ losses: UnsafeBufferPointer<Float>) -> [Double] {
        (0..<rows).map { row in -(0..<length).reduce(0.0) { $0 + Double(losses[row * length + $1]) } }
    }
}

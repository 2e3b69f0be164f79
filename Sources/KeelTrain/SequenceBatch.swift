import KeelData
import KeelKernels

/// A micro-batch of sequences — each a prompt and its completion — as the model reads them, as TRL's trainers lay
/// them out: one a row, cut to fit (keeping the start) and padded at the end to the longest row. Preference pairs
/// give the B chosen sequences in rows 0..<B and the B rejected ones in rows B..<2B.
struct SequenceBatch {
    /// How a sequence becomes a row of at most `maximumLength` positions.
    enum Layout {
        /// DPO's: each position's target is the next token where that token is the completion's
        /// (`CrossEntropy.ignored` elsewhere), so minus the sum of a row's per-position losses is the completion's
        /// log-probability; a sequence is cut to `maximumLength + 1` tokens.
        case nextTokens
        /// A reward model's: the whole sequence as input, cut to `maximumLength` tokens, read at its last position.
        case wholeSequences
    }

    /// Rows × `length` token ids, and targets (all ignored for `.wholeSequences`).
    var inputs: [Int32]
    var targets: [Int32]
    /// Positions per row: the longest row's.
    let length: Int
    /// Rows: one a sequence.
    let rows: Int
    /// Each row's completion tokens within the row (those `.nextTokens` targets).
    let completionLengths: [Int]
    /// Each row's last position holding a token.
    let lastPositions: [Int]

    /// The chosen responses of `pairs`, then the rejected ones.
    init(_ pairs: [PreferencePair], maximumLength: Int, padding: Int32, layout: Layout = .nextTokens) {
        self.init(sequences: pairs.map(\.chosen) + pairs.map(\.rejected), maximumLength: maximumLength, padding: padding,
                  layout: layout)
    }

    init(sequences: [SupervisedExample], maximumLength: Int, padding: Int32, layout: Layout = .nextTokens) {
        // The first target is token 1: a row of next tokens is its sequence shifted by one.
        let shift = layout == .nextTokens ? 1 : 0
        let positions = sequences.map { max(1, min($0.tokens.count, maximumLength + shift) - shift) }
        length = positions.max() ?? 1
        rows = sequences.count
        inputs = [Int32](repeating: padding, count: rows * length)
        targets = [Int32](repeating: CrossEntropy.ignored, count: rows * length)
        var lengths: [Int] = []
        for (row, sequence) in sequences.enumerated() {
            var counted = 0
            for t in 0..<min(positions[row], sequence.tokens.count - shift) {
                inputs[row * length + t] = sequence.tokens[t]
                if sequence.trained[t + shift] {
                    if layout == .nextTokens { targets[row * length + t] = sequence.tokens[t + 1] }
                    counted += 1
                }
            }
            lengths.append(counted)
        }
        completionLengths = lengths
        lastPositions = positions.map { $0 - 1 }
    }

    /// Whether a pair can be learnt from in rows of `maximumLength` positions. DPO's: both responses keep completion
    /// tokens (one that does not teaches nothing: TRL drops pairs whose prompt fills its `max_length`). A reward
    /// model's: both sequences whole, as TRL's `RewardTrainer` keeps only those — a cut one would be scored in the
    /// middle of its response instead of at its end.
    static func fits(_ pair: PreferencePair, maximumLength: Int, layout: Layout = .nextTokens) -> Bool {
        switch layout {
        case .nextTokens:
            return [pair.chosen, pair.rejected].allSatisfy { $0.trained.prefix(maximumLength + 1).dropFirst().contains(true) }
        case .wholeSequences:
            return [pair.chosen, pair.rejected].allSatisfy { $0.tokens.count <= maximumLength && $0.trained.contains(true) }
        }
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

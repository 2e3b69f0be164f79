import KeelCore
import KeelModel

/// What `StagePartition.balanced` makes alike across stages (`parallel.stage_balance`).
public enum StageBalance: String, CaseIterable, Sendable {
    /// Each stage's work per token: its blocks' products and attention, and on the last the output projection; the
    /// embedding is a lookup, nearly free. The slowest stage sets every step's pace, so this is the fast choice.
    case compute
    /// What each stage stores: its blocks, the embedding on the first, the head on the last (with GPT-2's tied token
    /// table copied there). The first stage then gets fewer blocks, for as many parameters as the embedding holds.
    case parameters
    /// Blocks alone, as Megatron-LM and torchtitan cut by default (at most ⌈L / stages⌉ each): the cut `keel plan`
    /// models.
    case layers
}

/// How a model's blocks are cut into pipeline stages.
public enum StagePartition {
    /// Cuts `config`'s blocks into `stages` contiguous, non-empty ranges whose costs by `balance` have the smallest
    /// possible maximum. Compute is counted per token of a sequence of `sequenceLength`: a block's 2 FLOPs per
    /// parameter of its products and 4 · T · d_model of attention; the last stage's output projection 2 · d_model ·
    /// vocab_size (Megatron-LM's "account for the loss" in its split; the embedding, a lookup, counts nothing).
    public static func balanced(_ config: ModelConfig, stages: Int, by balance: StageBalance = .compute,
                                sequenceLength: Int) throws -> [Range<Int>] {
        let layers = config.layers
        guard stages >= 1, stages <= layers else {
            throw KeelError("parallel layout: \(stages) pipeline stages need at least as many layers (model.n_layer is \(layers))")
        }
        let table = ParameterTable(config: config)
        let attention = 4 * sequenceLength * config.width
        var before = [0]  // cost of blocks 0..<l
        for layer in 0..<layers {
            let parameters = table.range(of: .block(layer)).count
            switch balance {
            case .compute: before.append(before[layer] + 2 * parameters + attention)
            case .parameters: before.append(before[layer] + parameters)
            case .layers: before.append(before[layer] + 1)
            }
        }
        let embedding: Int, head: Int, tiedCopy: Int
        switch balance {
        case .compute:
            (embedding, head, tiedCopy) = (0, 2 * config.width * config.vocabSize, 0)
        case .layers:
            (embedding, head, tiedCopy) = (0, 0, 0)
        case .parameters:
            embedding = table.range(of: .embedding).count
            head = table.range(of: .head).count
            tiedCopy = table.entries.contains { $0.slot == .output } ? 0 : table.entries.first { $0.slot == .tokenTable }!.count
        }
        func cost(_ range: Range<Int>) -> Int {
            before[range.upperBound] - before[range.lowerBound] + (range.lowerBound == 0 ? embedding : 0)
                + (range.upperBound == layers ? head + (range.lowerBound > 0 ? tiedCopy : 0) : 0)
        }
        // best[s][l]: the smallest largest stage when the first l layers form s stages; cut[s][l] where the
        // last of those stages starts.
        var best = [[Int]](repeating: [Int](repeating: .max, count: layers + 1), count: stages + 1)
        var cut = [[Int]](repeating: [Int](repeating: 0, count: layers + 1), count: stages + 1)
        best[0][0] = 0
        for s in 1...stages {
            for l in s...layers {
                for start in (s - 1)..<l where best[s - 1][start] != .max {
                    let worst = max(best[s - 1][start], cost(start..<l))
                    if worst < best[s][l] {
                        best[s][l] = worst
                        cut[s][l] = start
                    }
                }
            }
        }
        var ranges: [Range<Int>] = []
        var end = layers
        for s in stride(from: stages, through: 1, by: -1) {
            ranges.append(cut[s][end]..<end)
            end = cut[s][end]
        }
        return ranges.reversed()
    }
}

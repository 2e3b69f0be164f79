import KeelCore
import KeelModel

/// How a model's blocks are cut into pipeline stages.
public enum StagePartition {
    /// Cuts `config`'s blocks into `stages` contiguous, non-empty ranges whose parameter counts — what each
    /// stage stores: its blocks, the embedding on the first, the head on the last (with GPT-2's tied token
    /// table copied there) — have the smallest possible maximum.
    public static func balanced(_ config: ModelConfig, stages: Int) throws -> [Range<Int>] {
        let layers = config.layers
        guard stages >= 1, stages <= layers else {
            throw KeelError("parallel layout: \(stages) pipeline stages need at least as many layers (model.n_layer is \(layers))")
        }
        let table = ParameterTable(config: config)
        var before = [0]  // parameters of blocks 0..<l
        for layer in 0..<layers { before.append(before[layer] + table.range(of: .block(layer)).count) }
        let embedding = table.range(of: .embedding).count, head = table.range(of: .head).count
        let tiedCopy = table.entries.contains { $0.slot == .output } ? 0 : table.entries.first { $0.slot == .tokenTable }!.count
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

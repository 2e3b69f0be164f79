import KeelCore
import KeelModel

/// How a model's blocks are cut into pipeline stages.
public enum StagePartition {
    /// Cuts `config`'s blocks into `stages` contiguous, non-empty ranges whose parameter counts (the
    /// embedding counted on the first stage, the head on the last) have the smallest possible maximum: the
    /// slowest stage sets the pace of the whole pipeline.
    public static func balanced(_ config: ModelConfig, stages: Int) throws -> [Range<Int>] {
        let layers = config.layers
        guard stages >= 1, stages <= layers else {
            throw KeelError("parallel layout: \(stages) pipeline stages need at least as many layers (model.n_layer is \(layers))")
        }
        let table = ParameterTable(config: config)
        var cost = (0..<layers).map { Double(table.range(of: .block($0)).count) }
        cost[0] += Double(table.range(of: .embedding).count)
        cost[layers - 1] += Double(table.range(of: .head).count)
        // best[s][l]: the smallest largest stage when the first l layers form s stages; cut[s][l] where the
        // last of those stages starts.
        var best = [[Double]](repeating: [Double](repeating: .infinity, count: layers + 1), count: stages + 1)
        var cut = [[Int]](repeating: [Int](repeating: 0, count: layers + 1), count: stages + 1)
        best[0][0] = 0
        for s in 1...stages {
            for l in s...layers {
                var stage = 0.0
                for start in stride(from: l - 1, through: s - 1, by: -1) {
                    stage += cost[start]
                    let worst = max(best[s - 1][start], stage)
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

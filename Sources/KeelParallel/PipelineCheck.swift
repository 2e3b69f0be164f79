import KeelComm
import KeelCore
import KeelModel

/// A self-check of pipeline execution across a job (what `keel pipeline-check` runs): every rank holds the
/// stages a schedule gives it of a small model, runs one iteration through `PipelineExecutor` over real
/// messages, and compares the loss and every gradient with the whole model run in one piece on the same
/// micro-batches.
public enum PipelineCheck {
    /// The schedules checked, each with its virtual stages per rank.
    static let schedules: [(PipelineSchedule, Int)] = [(.gpipe, 1), (.oneForwardOneBackward, 1), (.interleaved, 2),
                                                         (.zeroBubbleH1, 1)]

    /// Runs each schedule for GPT-2 and Llama at m = p and 2p micro-batches over the whole of `pipeline`;
    /// throws at the first disagreement, returns the names of the checks that passed.
    public static func verify(_ pipeline: any Communicator) throws -> [String] {
        let p = pipeline.size
        var passed: [String] = []
        for architecture in Architecture.allCases {
            let config = ModelConfig(architecture: architecture, vocabSize: 37, layers: 2 * p, heads: 2,
                                     kvHeads: architecture == .llama ? 1 : nil, width: 16, maxLength: 8)
            for (schedule, v) in schedules {
                for m in [p, 2 * p] {
                    try check(config, schedule, virtualStages: v, microBatches: m, pipeline)
                    passed.append("\(architecture.rawValue) \(schedule.rawValue) m=\(m)")
                }
            }
        }
        return passed
    }

    private static func check(_ config: ModelConfig, _ schedule: PipelineSchedule, virtualStages v: Int, microBatches m: Int,
                              _ pipeline: any Communicator) throws {
        let p = pipeline.size, rank = pipeline.rank, batch = 2, length = 8
        let name = "\(config.architecture.rawValue) \(schedule.rawValue) m=\(m) on \(p) ranks"
        let perRank = try (0..<p).map { try schedule.actions(stages: p, virtualStages: v, microBatches: m, rank: $0) }
        try ScheduleValidator.validate(perRank, stages: p, virtualStages: v, microBatches: m)

        // Micro-batch k: batch × (length + 1) tokens from a formula every rank agrees on.
        let tokens = (0..<m).map { k in (0..<(batch * (length + 1))).map { Int32(($0 * 7 + k * 13 + $0 / 5) % config.vocabSize) } }
        func rows(_ k: Int, targets: Bool) -> [Int32] {
            (0..<batch).flatMap { b in tokens[k][(b * (length + 1) + (targets ? 1 : 0))...].prefix(length) }
        }
        let inputs = (0..<m).map { rows($0, targets: false) }, targets = (0..<m).map { rows($0, targets: true) }

        let whole = try Transformer(config: config, seed: 5)
        var wholeLoss = 0.0
        for k in 0..<m {
            inputs[k].withUnsafeBufferPointer { i in
                targets[k].withUnsafeBufferPointer { t in
                    wholeLoss += Double(whole.forward(inputs: i.baseAddress!, targets: t.baseAddress!, batch: batch, length: length,
                                                      lossScale: 1 / Float(m)))
                }
            }
            whole.backward()
        }

        let ranges = try StagePartition.balanced(config, stages: p * v, sequenceLength: length)
        let chunks = try (0..<v).map { c in try Transformer(config: config, seed: 5, layers: ranges[c * p + rank]) }
        let executor = PipelineExecutor(chunks: chunks, pipeline: pipeline, actions: perRank[rank], batch: batch, length: length)
        let losses = try inputs.withPointers { i in
            try targets.withPointers { t in
                try executor.run(inputs: { i[$0] }, targets: { t[$0] }, lossScale: 1 / Float(m), label: name)
            }
        }
        let loss = losses.reduce(0.0) { $0 + Double($1) }
        let total = try pipeline.allReduce([loss], .sum, label: "\(name): loss")[0]
        guard abs(total / wholeLoss - 1) < 1e-6 else {
            throw KeelError("\(name): pipeline loss \(total / Double(m)) differs from the whole model's \(wholeLoss / Double(m))")
        }

        // Gradients: each tensor against the whole model's (accumulated in another order, so to rounding). The
        // tied table's copies are summed over the ranks that hold them first.
        let tiedName = whole.config.tiedEmbeddings ? whole.table.entries.first { $0.slot == .tokenTable }?.name : nil
        var tied = [Float](repeating: 0, count: tiedName.flatMap { whole.table[$0]?.count } ?? 0)
        for chunk in chunks {
            for entry in chunk.table.entries {
                let gradient = Array(UnsafeBufferPointer(start: chunk.gradients.pointer + entry.offset, count: entry.count))
                if entry.name == tiedName {
                    for i in tied.indices { tied[i] += gradient[i] }
                    continue
                }
                try compare(gradient, whole, entry.name, name)
            }
        }
        if !tied.isEmpty {
            tied = try pipeline.allReduce(tied, .sum, label: "\(name): tied embedding")
            try compare(tied, whole, tiedName!, name)
        }
    }

    private static func compare(_ gradient: [Float], _ whole: Transformer, _ tensor: String, _ name: String) throws {
        let entry = whole.table[tensor]!
        var difference = 0.0, norm = 0.0
        for i in 0..<entry.count {
            let expected = Double(whole.gradients.pointer[entry.offset + i])
            difference += (Double(gradient[i]) - expected) * (Double(gradient[i]) - expected)
            norm += expected * expected
        }
        guard difference <= 1e-10 * max(norm, 1e-20) else {
            throw KeelError("\(name): the gradient of \(tensor) is off by \((difference / norm).squareRoot()) (relative)")
        }
    }
}

extension Array where Element == [Int32] {
    /// Calls `body` with a base address for each inner array, valid during the call.
    fileprivate func withPointers<R>(_ body: ([UnsafePointer<Int32>]) throws -> R) rethrows -> R {
        let copies = map { inner -> UnsafeMutablePointer<Int32> in
            let copy = UnsafeMutablePointer<Int32>.allocate(capacity: inner.count)
            copy.initialize(from: inner, count: inner.count)
            return copy
        }
        defer { copies.forEach { $0.deallocate() } }
        return try body(copies.map { UnsafePointer($0) })
    }
}

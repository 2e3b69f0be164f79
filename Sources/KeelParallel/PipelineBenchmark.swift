import KeelComm
import KeelCore
import KeelModel

/// Measures pipeline schedules on real ranks (what `keel pipeline-bench` runs): each schedule's step time and
/// measured bubble (idle share of each rank's step, from the executor's own timeline), beside the simulator's
/// bubble for the same schedule fed with the measured cost of each kind of pass.
public enum PipelineBenchmark {
    /// One schedule at one micro-batch count.
    public struct Result: Sendable {
        public let schedule: PipelineSchedule
        public let virtualStages: Int
        public let microBatches: Int
        /// Median over the timed steps of the slowest rank's step, in seconds.
        public let stepSeconds: Double
        /// Mean over ranks of 1 − busy / step, in the median step.
        public let measuredBubble: Double
        /// The simulator's bubble with the measured mean costs.
        public let simulatedBubble: Double
        /// The published formula's bubble (equal costs).
        public let theoreticalBubble: Double
        /// Each rank's most activations held at once, per chunk (the executor's slots).
        public let activationSlots: [[Int]]
        /// Each rank's most activations held at once as the simulator counts them (over its chunks).
        public let simulatedSlots: [Int]
        /// The measured mean cost of each kind of pass, as the simulator takes them.
        public let costs: ScheduleCosts
    }

    /// One schedule simulated at a pipeline size that was not measured.
    public struct Projection: Sendable {
        public let schedule: PipelineSchedule
        public let stages: Int
        public let microBatches: Int
        /// The simulator's bubble with the measured costs, every stage (chunk) as costly as a measured one.
        public let simulatedBubble: Double
        /// The published formula's bubble (equal costs).
        public let theoreticalBubble: Double
    }

    /// For each schedule of `measured`, its bubble at every pipeline size of `stages` with m = p, 2p and 4p
    /// micro-batches, simulated with the costs measured at that schedule's largest micro-batch count: what the
    /// schedules would idle on a deeper pipeline of stages as costly as the measured ones (transfers free).
    public static func project(_ measured: [Result], stages: [Int]) throws -> [Projection] {
        var projections: [Projection] = []
        var seen: [PipelineSchedule] = []
        for result in measured where !seen.contains(result.schedule) {
            seen.append(result.schedule)
            let basis = measured.filter { $0.schedule == result.schedule }.max { $0.microBatches < $1.microBatches }!
            for p in stages {
                for m in [p, 2 * p, 4 * p] {
                    let v = basis.virtualStages
                    let perRank = try (0..<p).map { try basis.schedule.actions(stages: p, virtualStages: v, microBatches: m, rank: $0) }
                    projections.append(Projection(
                        schedule: basis.schedule, stages: p, microBatches: m,
                        simulatedBubble: try ScheduleSimulator.run(perRank, costs: basis.costs).bubbleFraction,
                        theoreticalBubble: ScheduleSimulator.bubbleFormula(basis.schedule, stages: p, virtualStages: v,
                                                                           microBatches: m)))
                }
            }
        }
        return projections
    }

    /// Runs every schedule of `schedules` at every micro-batch count of `microBatches` over `pipeline`, with one
    /// untimed step and then `steps` timed ones each, on `config` cut into balanced stages; micro-batches of
    /// `batch` sequences of `length` tokens. Every rank returns the same results.
    public static func run(
        _ config: ModelConfig, schedules: [(PipelineSchedule, Int)], microBatches: [Int], batch: Int, length: Int,
        steps: Int, pipeline: any Communicator
    ) throws -> [Result] {
        let p = pipeline.size, rank = pipeline.rank
        var results: [Result] = []
        let tokens = (0..<(batch * length)).map { Int32($0 * 7 % config.vocabSize) }
        for (schedule, v) in schedules {
            let ranges = try StagePartition.balanced(config, stages: p * v, sequenceLength: length)
            let chunks = try (0..<v).map { try Transformer(config: config, seed: 1, layers: ranges[$0 * p + rank]) }
            for m in microBatches {
                let perRank = try (0..<p).map { try schedule.actions(stages: p, virtualStages: v, microBatches: m, rank: $0) }
                try ScheduleValidator.validate(perRank, stages: p, virtualStages: v, microBatches: m)
                let executor = PipelineExecutor(chunks: chunks, pipeline: pipeline, actions: perRank[rank], batch: batch,
                                                length: length)
                var timed: [(seconds: Double, bubble: Double, costs: [Double])] = []
                for step in 0...steps {
                    for chunk in chunks { chunk.gradients.zero() }
                    try pipeline.barrier(label: "pipeline bench")
                    let start = monotonicSeconds()
                    _ = try tokens.withUnsafeBufferPointer { t in
                        try executor.run(inputs: { _ in t.baseAddress! }, targets: { _ in t.baseAddress! },
                                         lossScale: 1 / Float(m), label: "\(schedule.rawValue) m=\(m) step \(step)")
                    }
                    let local = monotonicSeconds() - start
                    let seconds = try pipeline.allReduce([local], .max, label: "pipeline bench: step time")[0]
                    let busy = executor.timeline.reduce(0) { $0 + ($1.isPass ? $1.end - $1.start : 0) }
                    // Σ time and count of each kind of pass: forward, full backward, B, W.
                    var costs = [Double](repeating: 0, count: 8)
                    for pass in executor.timeline where pass.isPass {
                        let kind: Int
                        switch pass.action {
                        case .forward: kind = 0
                        case .backward: kind = 1
                        case .backwardInput: kind = 2
                        default: kind = 3
                        }
                        costs[2 * kind] += pass.end - pass.start
                        costs[2 * kind + 1] += 1
                    }
                    let shared = try pipeline.allReduce([1 - busy / seconds] + costs, .sum, label: "pipeline bench: costs")
                    if step > 0 { timed.append((seconds, shared[0] / Double(p), Array(shared.dropFirst()))) }
                }
                let median = timed.sorted { $0.seconds < $1.seconds }[timed.count / 2]
                func mean(_ kind: Int) -> Double { median.costs[2 * kind + 1] > 0 ? median.costs[2 * kind] / median.costs[2 * kind + 1] : 0 }
                // A full backward is simulated as B + W with all of it in B.
                let costs = schedule == .zeroBubbleH1
                    ? ScheduleCosts(forward: mean(0), backwardInput: mean(2), backwardWeight: mean(3))
                    : ScheduleCosts(forward: mean(0), backwardInput: mean(1), backwardWeight: 0)
                let simulation = try ScheduleSimulator.run(perRank, costs: costs)
                var slots = [Double](repeating: 0, count: p * v)
                for (chunk, count) in executor.activationSlots.enumerated() { slots[rank * v + chunk] = Double(count) }
                let held = try pipeline.allReduce(slots, .sum, label: "pipeline bench: slots")
                results.append(Result(
                    schedule: schedule, virtualStages: v, microBatches: m, stepSeconds: median.seconds,
                    measuredBubble: median.bubble, simulatedBubble: simulation.bubbleFraction,
                    theoreticalBubble: ScheduleSimulator.bubbleFormula(schedule, stages: p, virtualStages: v, microBatches: m),
                    activationSlots: (0..<p).map { r in (0..<v).map { Int(held[r * v + $0]) } },
                    simulatedSlots: simulation.peakInFlight, costs: costs))
            }
        }
        return results
    }
}

import KeelCore

/// How long each kind of pass takes in a schedule simulation, in any one unit of time.
public struct ScheduleCosts: Sendable, Equatable {
    /// One forward pass of one micro-batch through one chunk.
    public var forward: Double
    /// The input-gradient half of a backward pass (zero-bubble schedules' B).
    public var backwardInput: Double
    /// The weight-gradient half of a backward pass (zero-bubble schedules' W).
    public var backwardWeight: Double
    /// From the end of a send to the earliest end of its receive.
    public var transfer: Double

    /// Costs of each pass; a full backward costs `backwardInput + backwardWeight`.
    public init(forward: Double, backwardInput: Double, backwardWeight: Double, transfer: Double = 0) {
        self.forward = forward
        self.backwardInput = backwardInput
        self.backwardWeight = backwardWeight
        self.transfer = transfer
    }

    /// How long `action` keeps its rank busy; messages take none of the rank's time.
    func duration(of action: PipelineAction) -> Double {
        switch action {
        case .forward: forward
        case .backward: backwardInput + backwardWeight
        case .backwardInput: backwardInput
        case .backwardWeight: backwardWeight
        default: 0
        }
    }
}

/// Replays per-rank action lists with a cost for each pass, to measure a schedule's idle time ("bubble") and
/// the activations it holds, without a model or communication.
public enum ScheduleSimulator {
    /// When one action ran on its rank.
    public struct TimedAction: Sendable, Equatable {
        /// The action.
        public let action: PipelineAction
        /// When the rank reached it.
        public let start: Double
        /// When it finished; for a receive, when the message arrived.
        public let end: Double
    }

    /// What one simulated iteration did on every rank.
    public struct Simulation: Sendable {
        /// Each rank's actions with their times, in list order.
        public let timelines: [[TimedAction]]
        /// Each rank's time spent in forward and backward passes.
        public let busyTime: [Double]
        /// When the last rank finished.
        public let stepTime: Double
        /// Each rank's largest number of (micro-batch, chunk) pairs forwarded and not yet through their full
        /// backward or their backwardWeight: the activations it must hold at once (the executor's slots).
        public let peakInFlight: [Int]

        /// Each rank's share of the step spent idle: 1 − busy time / step time (0 for a step that takes no time).
        public var bubbleFractions: [Double] {
            busyTime.map { stepTime > 0 ? 1 - $0 / stepTime : 0 }
        }

        /// The mean of `bubbleFractions` over ranks: the share of the pipeline's time that is idle.
        public var bubbleFraction: Double {
            bubbleFractions.reduce(0, +) / Double(bubbleFractions.count)
        }
    }

    /// Runs `perRank` (one list per pipeline rank, whose count is p) under the executor's rules: a pass runs as
    /// soon as its rank reaches it, a send takes no time, and a receive ends at the later of its rank's clock and
    /// the matching send's end plus `costs.transfer`. Throws on negative or non-finite costs, and when the
    /// lists deadlock. Check a hand-made schedule with `ScheduleValidator` first: this does not.
    public static func run(_ perRank: [[PipelineAction]], costs: ScheduleCosts) throws -> Simulation {
        let values = [costs.forward, costs.backwardInput, costs.backwardWeight, costs.transfer]
        guard values.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw KeelError("schedule simulator: costs must be finite and non-negative, got forward \(costs.forward), "
                + "backwardInput \(costs.backwardInput), backwardWeight \(costs.backwardWeight), "
                + "transfer \(costs.transfer)")
        }
        guard !perRank.isEmpty else { throw KeelError("schedule simulator: needs at least one rank's actions") }
        var timelines = perRank.map { actions in
            var timeline: [TimedAction] = []
            timeline.reserveCapacity(actions.count)
            return timeline
        }
        var busyTime = Array(repeating: 0.0, count: perRank.count)
        var inFlight = Array(repeating: Set<MicroBatchChunk>(), count: perRank.count)
        var peakInFlight = Array(repeating: 0, count: perRank.count)
        try PipelineReplay.run(perRank) { here, matchingSend in
            let rank = here.rank
            let action = perRank[rank][here.index]
            let start = timelines[rank].last?.end ?? 0
            let end = matchingSend.map { max(start, timelines[$0.rank][$0.index].end + costs.transfer) }
                ?? start + costs.duration(of: action)
            timelines[rank].append(TimedAction(action: action, start: start, end: end))
            busyTime[rank] += costs.duration(of: action)
            switch action {
            case let .forward(microBatch, chunk):
                inFlight[rank].insert(MicroBatchChunk(microBatch: microBatch, chunk: chunk))
                peakInFlight[rank] = max(peakInFlight[rank], inFlight[rank].count)
            case let .backward(microBatch, chunk), let .backwardWeight(microBatch, chunk):
                // A split backward's B keeps the activations: its W reads them (and the output gradients B leaves).
                inFlight[rank].remove(MicroBatchChunk(microBatch: microBatch, chunk: chunk))
            default:
                break
            }
        }
        let stepTime = timelines.compactMap { $0.last?.end }.max() ?? 0
        return Simulation(timelines: timelines, busyTime: busyTime, stepTime: stepTime, peakInFlight: peakInFlight)
    }

    /// The published idle share of `schedule`, as `Simulation.bubbleFraction` measures it with no transfer
    /// time: GPipe and 1F1B (p − 1)/(m + p − 1); interleaved (p − 1)/(v·m + p − 1), for chunks that each cost
    /// 1/v of a whole stage; these hold for any ratio of backward to forward time. For ZB-H1, (p − 1)/(3m + p − 1),
    /// its value for equal F, B and W times: the paper's idle time (p − 1)(F + B − W) is then p − 1 units per
    /// rank against 1F1B's 3(p − 1), a third (the fractions' ratio, (m + p − 1)/(3m + p − 1), is larger since
    /// the step is shorter too), and no schedule does better: the last rank cannot start before p − 1 forwards
    /// have reached it. `virtualStages` matters to interleaved only.
    public static func bubbleFormula(_ schedule: PipelineSchedule, stages: Int, virtualStages: Int,
                                     microBatches: Int) -> Double {
        precondition(stages >= 1 && virtualStages >= 1 && microBatches >= 1, "bubbleFormula: empty pipeline")
        let p = Double(stages), v = Double(virtualStages), m = Double(microBatches)
        return switch schedule {
        case .gpipe, .oneForwardOneBackward: (p - 1) / (m + p - 1)
        case .interleaved: (p - 1) / (v * m + p - 1)
        case .zeroBubbleH1: (p - 1) / (3 * m + p - 1)
        }
    }
}

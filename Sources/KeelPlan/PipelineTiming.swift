import KeelParallel

/// A pipeline step's length and held activations, from Keel's schedule simulator and the same action lists
/// the executor runs.
enum PipelineTiming {
    /// The simulated step of `schedule` over p stages, v chunks per rank and m micro-batches, from the first
    /// pass to the last rank's end. From 2p micro-batches on every schedule is in its steady state, in which each
    /// further micro-batch adds the same time; so beyond 4p the step is extrapolated linearly from simulations of
    /// 2p + m mod p and 3p + m mod p micro-batches (tests check this against full simulations, up to p = 64).
    static func step(_ schedule: PipelineSchedule, stages p: Int, virtualStages v: Int, microBatches m: Int,
                     costs: ScheduleCosts) throws -> Double {
        func run(_ microBatches: Int) throws -> Double {
            let lists = try (0..<p).map {
                try schedule.actions(stages: p, virtualStages: v, microBatches: microBatches, rank: $0)
            }
            return try ScheduleSimulator.run(lists, costs: costs).stepTime
        }
        guard m > 4 * p else { return try run(m) }
        let first = 2 * p + m % p, second = first + p
        let a = try run(first), b = try run(second)
        return b + Double(m - second) * (b - a) / Double(p)
    }

    /// Each rank's most (micro-batch, chunk) activations held at once, and how many of those wait for their W
    /// then: counted along its action list (it depends on the order of the list only, not on timing). GPipe holds
    /// all m·v; the others stop growing after their warm-up, so beyond 4p micro-batches the lists of 2p + m mod p
    /// are counted.
    static func heldActivations(_ schedule: PipelineSchedule, stages p: Int, virtualStages v: Int,
                                microBatches m: Int) throws -> HeldActivations {
        guard schedule != .gpipe else {
            return HeldActivations(slots: Array(repeating: m * v, count: p), awaitingWeights: Array(repeating: 0, count: p))
        }
        let counted = m > 4 * p ? 2 * p + m % p : m
        var result = HeldActivations(slots: [], awaitingWeights: [])
        for rank in 0..<p {
            var held = 0, awaiting = 0, peak = (held: 0, awaiting: 0)
            for action in try schedule.actions(stages: p, virtualStages: v, microBatches: counted, rank: rank) {
                switch action {
                case .forward: held += 1
                case .backward: held -= 1
                case .backwardInput: awaiting += 1   // a split backward holds its slot until W
                case .backwardWeight: held -= 1; awaiting -= 1
                default: break
                }
                // A slot outweighs the output gradients a W waits with: the most slots first, then the most waiting.
                if (held, awaiting) > peak { peak = (held, awaiting) }
            }
            result.slots.append(peak.held)
            result.awaitingWeights.append(peak.awaiting)
        }
        return result
    }
}

/// The activations each pipeline rank holds at its peak: `slots` micro-batches' (per chunk), of which
/// `awaitingWeights` have run their backward's B half and wait for W (ZB-H1), holding their layers' output gradients
/// as well.
struct HeldActivations: Hashable {
    var slots: [Int]
    var awaitingWeights: [Int]
}

extension HeldActivations {
    /// One stage (no pipeline): one micro-batch at a time.
    static let unpipelined = HeldActivations(slots: [1], awaitingWeights: [0])
}

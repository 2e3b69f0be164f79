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

    /// Each rank's most (micro-batch, chunk) activations held at once: counted along its action list (it depends
    /// on the order of the list only, not on timing). GPipe holds all m·v; the others stop growing after their
    /// warm-up, so beyond 4p micro-batches the lists of 2p + m mod p are counted.
    static func peakInFlight(_ schedule: PipelineSchedule, stages p: Int, virtualStages v: Int,
                             microBatches m: Int) throws -> [Int] {
        guard schedule != .gpipe else { return Array(repeating: m * v, count: p) }
        let counted = m > 4 * p ? 2 * p + m % p : m
        return try (0..<p).map { rank in
            var held = 0, peak = 0
            for action in try schedule.actions(stages: p, virtualStages: v, microBatches: counted, rank: rank) {
                switch action {
                case .forward: held += 1
                case .backward, .backwardInput: held -= 1
                default: break
                }
                peak = max(peak, held)
            }
            return peak
        }
    }
}

import KeelComm
import KeelCore

/// What one pipeline rank was configured to run: its schedule, chunks per rank, micro-batches, the layers of
/// every stage, and its own action list.
public struct PipelinePlan: Sendable {
    public var schedule: PipelineSchedule
    public var virtualStages: Int
    public var microBatches: Int
    /// The blocks of every stage, in stage order (p · v ranges).
    public var layers: [Range<Int>]
    /// This rank's actions for one iteration.
    public var actions: [PipelineAction]
    /// Other settings every rank must share, by name ("training.batch_size"): what sizes the messages (a larger
    /// receive takes a shorter message without complaint, and the next pass reads what the buffer held before) or
    /// what the stages compute.
    public var settings: [(name: String, value: Int64)]

    public init(schedule: PipelineSchedule, virtualStages: Int, microBatches: Int, layers: [Range<Int>],
                actions: [PipelineAction], settings: [(name: String, value: Int64)] = []) {
        self.schedule = schedule
        self.virtualStages = virtualStages
        self.microBatches = microBatches
        self.layers = layers
        self.actions = actions
        self.settings = settings
    }

    /// Checks, before any training, that every rank of `pipeline` holds the same plan and that their action
    /// lists together form a correct iteration (`ScheduleValidator`). Ranks launched with different settings
    /// would otherwise wait for messages that never come, or silently skip layers. Every rank sees the same
    /// gathered plans, so all of them throw the same error, naming the ranks that disagree.
    public func checkAgreement(over pipeline: any Communicator) throws {
        let p = pipeline.size
        guard p > 1 else { return }
        // First what every rank runs, in a fixed width (the action count differs between ranks and is not
        // compared), then the stage boundaries, whose number the first row fixed, then the actions.
        let schedules = try rows([Int64(PipelineSchedule.allCases.firstIndex(of: schedule)!), Int64(virtualStages),
                                       Int64(microBatches), Int64(layers.count), Int64(actions.count)] + settings.map(\.value),
                                      over: pipeline, label: "pipeline plan")

        // The settings first: the stage cut follows from some of them (the sequence length weighs attention).
        for (index, setting) in settings.enumerated() {
            let column = 5 + index
            if let rank = (1..<p).first(where: { schedules[$0][column] != schedules[0][column] }) {
                throw KeelError("parallel layout: pipeline rank \(rank) runs \(setting.name) = \(schedules[rank][column]) but rank 0 runs "
                    + "\(schedules[0][column]); every rank must be started with the same settings")
            }
        }
        var boundaries: [[Int64]] = []
        if schedules.allSatisfy({ $0.prefix(4) == schedules[0].prefix(4) }) {
            boundaries = try rows(layers.map { Int64($0.upperBound) }, over: pipeline, label: "pipeline stages")
        }
        for rank in 1..<p {
            guard schedules[rank].prefix(4) != schedules[0].prefix(4) || (!boundaries.isEmpty && boundaries[rank] != boundaries[0])
            else { continue }
            func describe(_ rank: Int) -> String {
                let row = schedules[rank], stages = boundaries.isEmpty ? "" : ", stages ending at layers "
                    + "[\(boundaries[rank].map(String.init).joined(separator: ","))]"
                return "schedule \(PipelineSchedule.allCases[Int(row[0])].rawValue), virtual_stages \(row[1]), "
                    + "micro_batches \(row[2])\(stages)"
            }
            throw KeelError("parallel layout: pipeline rank \(rank) runs \(describe(rank)) but rank 0 runs "
                + "\(describe(0)); every rank must be started with the same [parallel] and [model] settings")
        }
        let counts = schedules.map { Int($0[4]) }, longest = counts.max()!
        let codes = actions.flatMap(\.encoded) + [Int64](repeating: 0, count: (longest - actions.count) * 4)
        let all = try rows(codes, over: pipeline, label: "pipeline actions")
        let perRank = try (0..<p).map { rank in
            try (0..<counts[rank]).map { index in
                guard let action = PipelineAction(encoded: all[rank][(index * 4)..<(index * 4 + 4)]) else {
                    throw KeelError("pipeline schedule: rank \(rank) sent an unreadable action \(Array(all[rank][(index * 4)..<(index * 4 + 4)]))")
                }
                return action
            }
        }
        try ScheduleValidator.validate(perRank, stages: p, virtualStages: virtualStages, microBatches: microBatches)
    }

    /// Every rank's `row` (the same length on every rank), in rank order, on every rank.
    private func rows(_ row: [Int64], over group: any Communicator, label: String) throws -> [[Int64]] {
        let all = try group.allGather(row, label: label)
        return (0..<group.size).map { Array(all[($0 * row.count)..<(($0 + 1) * row.count)]) }
    }
}

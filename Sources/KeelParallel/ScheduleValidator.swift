import KeelCore

/// Checks that per-rank action lists form one correct training iteration before an executor runs them, so that
/// a wrong schedule fails with a message naming the rank and the action instead of hanging or computing
/// wrong gradients.
public enum ScheduleValidator {
    /// Throws, naming the rank and the action, unless `perRank` (one list per pipeline rank) runs every
    /// (micro-batch, chunk) forward once and backward once (one full backward, or one B followed by one W),
    /// each pass after the messages it consumes and each send after the pass that produces it, ends every list
    /// with the optimizer step, pairs every send with exactly one receive and every receive with one send, and
    /// runs to the end without deadlock when sends are buffered and receives block.
    public static func validate(_ perRank: [[PipelineAction]], stages p: Int, virtualStages v: Int,
                                microBatches m: Int) throws {
        guard p >= 1, v >= 1, m >= 1 else {
            throw KeelError("pipeline schedule: stages (\(p)), virtual stages (\(v)) and micro-batches (\(m)) "
                + "must be positive")
        }
        guard perRank.count == p else {
            throw KeelError("pipeline schedule: has \(perRank.count) ranks' action lists for \(p) pipeline stages")
        }
        let layout = StageLayout(ranks: p)
        for (rank, actions) in perRank.enumerated() {
            for (index, action) in actions.enumerated() {
                try checkBounds(action, at: ActionLocation(rank: rank, index: index), layout: layout,
                                virtualStages: v, microBatches: m)
            }
        }
        // Pairing comes before each rank's order so that a missing message is reported as such, not as the
        // pass that would have consumed it.
        try checkPairs(perRank, layout: layout)
        for (rank, actions) in perRank.enumerated() {
            try checkOrder(actions, rank: rank, layout: layout, virtualStages: v, microBatches: m)
        }
        try PipelineReplay.run(perRank) { _, _ in }
    }

    private static func failure(_ action: PipelineAction, at location: ActionLocation,
                                _ problem: String) -> KeelError {
        KeelError("pipeline schedule: rank \(location.rank), action \(location.index) \(action): \(problem)")
    }

    /// What one action means on its own: its micro-batch and chunk exist, and a message goes to or comes from
    /// the rank that holds the neighbouring stage.
    private static func checkBounds(_ action: PipelineAction, at location: ActionLocation, layout: StageLayout,
                                    virtualStages v: Int, microBatches m: Int) throws {
        guard let work = action.work else { return }
        guard (0..<m).contains(work.microBatch) else {
            throw failure(action, at: location, "micro-batch is outside 0..<\(m)")
        }
        guard (0..<v).contains(work.chunk) else { throw failure(action, at: location, "chunk is outside 0..<\(v)") }
        guard let peer = action.peer, let transfer = Transfer(action, rank: location.rank, layout: layout) else {
            return
        }
        let neighbour = action.isReceive ? transfer.fromStage : transfer.toStage
        guard (0..<layout.ranks * v).contains(neighbour) else {
            throw failure(action, at: location, "there is no stage \(neighbour) (stages are 0..<\(layout.ranks * v))")
        }
        let holder = layout.rank(ofStage: neighbour)
        guard peer == holder else {
            throw failure(action, at: location, "stage \(neighbour) is on rank \(holder), not \(peer)")
        }
    }

    /// Every send has exactly one receive and every receive exactly one send.
    private static func checkPairs(_ perRank: [[PipelineAction]], layout: StageLayout) throws {
        var sends: [Transfer: ActionLocation] = [:]
        var receives: [Transfer: ActionLocation] = [:]
        for (rank, actions) in perRank.enumerated() {
            for (index, action) in actions.enumerated() {
                guard let transfer = Transfer(action, rank: rank, layout: layout) else { continue }
                let here = ActionLocation(rank: rank, index: index)
                if action.isReceive {
                    if receives.updateValue(here, forKey: transfer) != nil {
                        throw failure(action, at: here, "receives the same message a second time")
                    }
                } else if sends.updateValue(here, forKey: transfer) != nil {
                    throw failure(action, at: here, "sends the same message a second time")
                }
            }
        }
        for (rank, actions) in perRank.enumerated() {
            for (index, action) in actions.enumerated() {
                guard let transfer = Transfer(action, rank: rank, layout: layout) else { continue }
                let here = ActionLocation(rank: rank, index: index)
                if action.isReceive, sends[transfer] == nil {
                    throw failure(action, at: here, "no rank sends it (expected \(transfer.send(layout)) on rank "
                        + "\(layout.rank(ofStage: transfer.fromStage)))")
                }
                if !action.isReceive, receives[transfer] == nil {
                    throw failure(action, at: here, "no rank receives it (expected \(transfer.receive(layout)) on rank "
                        + "\(layout.rank(ofStage: transfer.toStage)))")
                }
            }
        }
    }

    /// What one (micro-batch, chunk) has been through so far on its rank.
    private struct Progress {
        var activationReceived = false
        var forwarded = false
        var gradientReceived = false
        var fullBackward = false
        var backwardInput = false
        var backwardWeight = false
    }

    /// One rank's list: each pass once, after what it needs, and the optimizer step last.
    private static func checkOrder(_ actions: [PipelineAction], rank: Int, layout: StageLayout, virtualStages v: Int,
                                   microBatches m: Int) throws {
        let lastStage = layout.ranks * v - 1
        var progress: [MicroBatchChunk: Progress] = [:]
        for (index, action) in actions.enumerated() {
            let here = ActionLocation(rank: rank, index: index)
            guard let work = action.work else {
                guard index == actions.count - 1 else { throw failure(action, at: here, "is not the last action") }
                continue
            }
            let stage = layout.stage(rank: rank, chunk: work.chunk)
            var state = progress[work, default: Progress()]
            func require(_ condition: Bool, _ problem: String) throws {
                guard condition else { throw failure(action, at: here, problem) }
            }
            switch action {
            case .forward:
                try require(!state.forwarded, "runs a second time")
                try require(stage == 0 || state.activationReceived, "runs before its activation is received")
                state.forwarded = true
            case .backward, .backwardInput:
                let isFull = if case .backward = action { true } else { false }
                try require(state.forwarded, "comes before its forward")
                if state.fullBackward || state.backwardInput {
                    let again = isFull ? state.fullBackward : state.backwardInput
                    throw failure(action, at: here,
                                  again ? "runs a second time" : "mixes a full backward with a split one")
                }
                try require(stage == lastStage || state.gradientReceived, "runs before its gradient is received")
                if isFull { state.fullBackward = true } else { state.backwardInput = true }
            case .backwardWeight:
                try require(!state.fullBackward, "mixes a full backward with a split one")
                try require(state.backwardInput, "comes before its backwardInput")
                try require(!state.backwardWeight, "runs a second time")
                state.backwardWeight = true
            case .sendActivation:
                try require(state.forwarded, "sends before the forward that produces it")
            case .sendGradient:
                try require(state.fullBackward || state.backwardInput, "sends before the backward that produces it")
            case .receiveActivation:
                try require(!state.forwarded, "arrives after the forward that needs it")
                state.activationReceived = true
            case .receiveGradient:
                try require(!state.fullBackward && !state.backwardInput, "arrives after the backward that needs it")
                state.gradientReceived = true
            case .optimizerStep:
                break  // Checked above: it works on no micro-batch.
            }
            progress[work] = state
        }
        guard actions.last == .optimizerStep else {
            throw KeelError("pipeline schedule: rank \(rank) does not end with the optimizer step")
        }
        for microBatch in 0..<m {
            for chunk in 0..<v {
                let state = progress[MicroBatchChunk(microBatch: microBatch, chunk: chunk), default: Progress()]
                let missing: String? =
                    if !state.forwarded { "forward" }
                    else if !state.fullBackward && !state.backwardInput { "backward" }
                    else if state.backwardInput && !state.backwardWeight { "backwardWeight" }
                    else { nil }
                if let missing {
                    throw KeelError("pipeline schedule: rank \(rank) never runs the \(missing) of micro-batch "
                        + "\(microBatch) on chunk \(chunk)")
                }
            }
        }
    }
}

import KeelCore

/// One point-to-point message of a pipeline schedule: a micro-batch's activation going one stage forward, or
/// its gradient going one stage back. A send and a receive match when they name the same message.
struct Transfer: Hashable {
    enum Kind: Hashable {
        case activation, gradient
    }

    let kind: Kind
    let microBatch: Int
    let fromStage: Int
    let toStage: Int

    /// The activation `microBatch` produces at `stage`, for the next stage.
    static func activation(_ microBatch: Int, leaving stage: Int) -> Transfer {
        Transfer(kind: .activation, microBatch: microBatch, fromStage: stage, toStage: stage + 1)
    }

    /// The gradient `microBatch` produces at `stage`, for the previous stage.
    static func gradient(_ microBatch: Int, leaving stage: Int) -> Transfer {
        Transfer(kind: .gradient, microBatch: microBatch, fromStage: stage, toStage: stage - 1)
    }

    /// The send, as the rank holding `fromStage` executes it.
    func send(_ layout: StageLayout) -> PipelineAction {
        let chunk = layout.chunk(ofStage: fromStage), peer = layout.rank(ofStage: toStage)
        return switch kind {
        case .activation: .sendActivation(microBatch: microBatch, chunk: chunk, to: peer)
        case .gradient: .sendGradient(microBatch: microBatch, chunk: chunk, to: peer)
        }
    }

    /// The receive, as the rank holding `toStage` executes it.
    func receive(_ layout: StageLayout) -> PipelineAction {
        let chunk = layout.chunk(ofStage: toStage), peer = layout.rank(ofStage: fromStage)
        return switch kind {
        case .activation: .receiveActivation(microBatch: microBatch, chunk: chunk, from: peer)
        case .gradient: .receiveGradient(microBatch: microBatch, chunk: chunk, from: peer)
        }
    }
}

extension Transfer {
    /// The message a send or receive executed on `rank` names; nil for any other action.
    init?(_ action: PipelineAction, rank: Int, layout: StageLayout) {
        switch action {
        case let .sendActivation(microBatch, chunk, _):
            self = .activation(microBatch, leaving: layout.stage(rank: rank, chunk: chunk))
        case let .receiveActivation(microBatch, chunk, _):
            self = .activation(microBatch, leaving: layout.stage(rank: rank, chunk: chunk) - 1)
        case let .sendGradient(microBatch, chunk, _):
            self = .gradient(microBatch, leaving: layout.stage(rank: rank, chunk: chunk))
        case let .receiveGradient(microBatch, chunk, _):
            self = .gradient(microBatch, leaving: layout.stage(rank: rank, chunk: chunk) + 1)
        default:
            return nil
        }
    }
}

/// The position of an action: its rank and its index in that rank's list.
struct ActionLocation: Hashable {
    let rank: Int
    let index: Int
}

/// Runs every rank's action list the way the executor will: sends are buffered (posted without waiting, as
/// non-blocking MPI sends), a receive waits until the matching send has run, and every other action runs when
/// its rank reaches it. The validator's deadlock check and the simulator's clock both follow these rules.
enum PipelineReplay {
    /// Calls `visit` for each action in an order that respects those rules (each rank's actions in list order),
    /// passing, for a receive, where its matching send ran. Throws, naming what each stuck rank waits for, when
    /// no rank can advance and some still have actions.
    static func run(_ perRank: [[PipelineAction]],
                    visit: (_ location: ActionLocation, _ matchingSend: ActionLocation?) throws -> Void) throws {
        let layout = StageLayout(ranks: perRank.count)
        var next = Array(repeating: 0, count: perRank.count)
        var sent: [Transfer: ActionLocation] = [:]
        var waiting: [Transfer: Int] = [:]
        // Ranks that may advance; a blocked rank comes back only when the send it waits for has run.
        var runnable = Array(perRank.indices.reversed())
        while let rank = runnable.popLast() {
            while next[rank] < perRank[rank].count {
                let here = ActionLocation(rank: rank, index: next[rank])
                let action = perRank[rank][here.index]
                let transfer = Transfer(action, rank: rank, layout: layout)
                var matchingSend: ActionLocation?
                if let transfer, action.isReceive {
                    guard let send = sent[transfer] else {
                        waiting[transfer] = rank
                        break
                    }
                    matchingSend = send
                }
                try visit(here, matchingSend)
                next[rank] += 1
                if let transfer, !action.isReceive {
                    sent[transfer] = here
                    if let peer = waiting.removeValue(forKey: transfer) { runnable.append(peer) }
                }
            }
        }
        let stuck = perRank.indices.filter { next[$0] < perRank[$0].count }
        guard stuck.isEmpty else {
            let waits = stuck.map { "rank \($0) waits at action \(next[$0]) \(perRank[$0][next[$0]])" }
            throw KeelError("pipeline schedule deadlocks: \(waits.joined(separator: "; "))")
        }
    }
}

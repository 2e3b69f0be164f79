/// One step in one pipeline rank's schedule: a pass of a micro-batch through one of the rank's model chunks,
/// a point-to-point message to or from a neighbouring stage, or the optimizer step that ends the iteration.
///
/// `chunk` is always the index (0..<v) of a model chunk on the rank that executes the action. Chunks are
/// interleaved over ranks as in Megatron-LM: chunk c of rank r is global stage c · p + r, so with one chunk per
/// rank the stage is the rank. Stage 0 holds the embedding (its forward receives nothing) and stage p · v − 1
/// the loss (its backward starts from its own forward, so it receives no gradient). The matching action on a
/// peer names the peer's own chunk index, which differs from the sender's when the message crosses from the
/// last rank back to the first.
public enum PipelineAction: Hashable, Sendable {
    /// The forward pass of `microBatch` through this rank's `chunk`.
    case forward(microBatch: Int, chunk: Int)
    /// The whole backward pass of `microBatch` through `chunk`: the input gradient, then the weight gradient.
    case backward(microBatch: Int, chunk: Int)
    /// The first half of a split backward pass (zero-bubble schedules' B): the gradient with respect to the
    /// chunk's input, which the previous stage is waiting for.
    case backwardInput(microBatch: Int, chunk: Int)
    /// The second half of a split backward pass (zero-bubble schedules' W): the weight gradient, which no other
    /// stage waits for, so it may run later to fill idle time.
    case backwardWeight(microBatch: Int, chunk: Int)
    /// Sends the output of `chunk`'s forward pass to the rank holding the next stage.
    case sendActivation(microBatch: Int, chunk: Int, to: Int)
    /// Receives the input of `chunk`'s forward pass from the rank holding the previous stage.
    case receiveActivation(microBatch: Int, chunk: Int, from: Int)
    /// Sends the gradient with respect to `chunk`'s input to the rank holding the previous stage.
    case sendGradient(microBatch: Int, chunk: Int, to: Int)
    /// Receives the gradient with respect to `chunk`'s output from the rank holding the next stage.
    case receiveGradient(microBatch: Int, chunk: Int, from: Int)
    /// Updates the weights once every micro-batch's gradients are complete.
    case optimizerStep

    /// The micro-batch and chunk the action works on; nil for the optimizer step.
    var work: MicroBatchChunk? {
        switch self {
        case let .forward(microBatch, chunk), let .backward(microBatch, chunk),
             let .backwardInput(microBatch, chunk), let .backwardWeight(microBatch, chunk),
             let .sendActivation(microBatch, chunk, _), let .receiveActivation(microBatch, chunk, _),
             let .sendGradient(microBatch, chunk, _), let .receiveGradient(microBatch, chunk, _):
            MicroBatchChunk(microBatch: microBatch, chunk: chunk)
        case .optimizerStep:
            nil
        }
    }

    /// The rank a send goes to or a receive comes from; nil for any other action.
    var peer: Int? {
        switch self {
        case let .sendActivation(_, _, rank), let .receiveActivation(_, _, rank),
             let .sendGradient(_, _, rank), let .receiveGradient(_, _, rank):
            rank
        default:
            nil
        }
    }

    /// Whether the action waits for a peer (sends never do).
    var isReceive: Bool {
        switch self {
        case .receiveActivation, .receiveGradient: true
        default: false
        }
    }
}

extension PipelineAction {
    /// The action as four integers — kind (0…8 in declaration order), micro-batch, chunk, peer rank (−1 where
    /// there is none) — to send it to another process or record it in a timeline.
    public var encoded: [Int64] {
        let (kind, microBatch, chunk, peer): (Int, Int, Int, Int) = switch self {
        case let .forward(k, c): (0, k, c, -1)
        case let .backward(k, c): (1, k, c, -1)
        case let .backwardInput(k, c): (2, k, c, -1)
        case let .backwardWeight(k, c): (3, k, c, -1)
        case let .sendActivation(k, c, r): (4, k, c, r)
        case let .receiveActivation(k, c, r): (5, k, c, r)
        case let .sendGradient(k, c, r): (6, k, c, r)
        case let .receiveGradient(k, c, r): (7, k, c, r)
        case .optimizerStep: (8, 0, 0, -1)
        }
        return [Int64(kind), Int64(microBatch), Int64(chunk), Int64(peer)]
    }

    /// The action `encoded` describes (four integers); nil when they describe none.
    public init?(encoded e: ArraySlice<Int64>) {
        guard e.count == 4 else { return nil }
        let (k, c, r) = (Int(e[e.startIndex + 1]), Int(e[e.startIndex + 2]), Int(e[e.startIndex + 3]))
        switch e[e.startIndex] {
        case 0: self = .forward(microBatch: k, chunk: c)
        case 1: self = .backward(microBatch: k, chunk: c)
        case 2: self = .backwardInput(microBatch: k, chunk: c)
        case 3: self = .backwardWeight(microBatch: k, chunk: c)
        case 4: self = .sendActivation(microBatch: k, chunk: c, to: r)
        case 5: self = .receiveActivation(microBatch: k, chunk: c, from: r)
        case 6: self = .sendGradient(microBatch: k, chunk: c, to: r)
        case 7: self = .receiveGradient(microBatch: k, chunk: c, from: r)
        case 8: self = .optimizerStep
        default: return nil
        }
    }
}

/// A micro-batch on one model chunk of a rank: the unit that is forwarded once and backwarded once, and whose
/// activations are held in between.
struct MicroBatchChunk: Hashable {
    let microBatch: Int
    let chunk: Int
}

/// Where global stages live: Megatron's interleaving puts stage s on rank s mod p as that rank's chunk s / p,
/// so that consecutive stages are on consecutive ranks and every rank holds one stage of each group of p.
struct StageLayout {
    /// Pipeline ranks (p).
    let ranks: Int

    func stage(rank: Int, chunk: Int) -> Int { chunk * ranks + rank }
    func rank(ofStage stage: Int) -> Int { stage % ranks }
    func chunk(ofStage stage: Int) -> Int { stage / ranks }
}

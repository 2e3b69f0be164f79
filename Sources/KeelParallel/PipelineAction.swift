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

import KeelCore

/// A pipeline-parallel schedule: the order in which each rank runs the forward and backward passes of one
/// iteration's micro-batches, with the messages to its neighbours around them.
///
/// A schedule is a pure function of the pipeline's shape and the rank, so every rank builds its own list and
/// all ranks agree without talking. Every schedule here is a flush schedule: weights change only in the
/// optimizer step that ends every rank's list, after the last gradient.
public enum PipelineSchedule: String, CaseIterable, Sendable {
    /// GPipe (Huang et al. 2019): every forward, then every backward. Each rank holds all m micro-batches'
    /// activations at once.
    case gpipe
    /// 1F1B as in PipeDream-flush and Megatron-LM: GPipe's bubble, but each rank starts backwards as soon as
    /// it can, so rank r holds at most p − r micro-batches' activations instead of m.
    case oneForwardOneBackward = "1f1b"
    /// Megatron-LM's interleaved 1F1B: each rank holds v ≥ 2 model chunks, so a micro-batch visits every rank
    /// v times and the bubble shrinks by a factor of v, for more messages and more held activations. Needs
    /// the micro-batches to be a multiple of the pipeline ranks. With one rank, the messages between its
    /// chunks go from the rank to itself.
    case interleaved
    /// ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism"): 1F1B with each backward split into its
    /// input-gradient half B, which the previous stage waits for, and its weight-gradient half W, which
    /// nobody waits for and which fills the bubbles. A micro-batch's activations are held until its W, so every
    /// rank holds up to p micro-batches' (1F1B's first rank's count, which is the peak of both), not p − rank.
    case zeroBubbleH1 = "zb-h1"

    /// The actions of `rank` (0..<p) for one iteration of `m` micro-batches over `p` pipeline ranks with `v`
    /// model chunks per rank, ending with the optimizer step. Throws when the combination is not one this
    /// schedule supports.
    public func actions(stages p: Int, virtualStages v: Int, microBatches m: Int,
                        rank: Int) throws -> [PipelineAction] {
        try checkShape(stages: p, virtualStages: v, microBatches: m, rank: rank)
        return Self.withMessages(passes(stages: p, virtualStages: v, microBatches: m, rank: rank), stages: p,
                                 virtualStages: v, rank: rank) + [.optimizerStep]
    }

    /// A forward-only iteration (validation), with the messages between stages: groups of p micro-batches, each
    /// group through this rank's chunks in stage order, micro-batch by micro-batch within a chunk (the interleaved
    /// schedule's forward order; with one chunk, micro-batch by micro-batch). So a chunk's pass waits for the p − 1
    /// stages after the previous chunk once per group, while the group's other micro-batches keep the rank busy,
    /// instead of once per micro-batch: m·v + p − 1 passes' time with equal stages. No gradients, no optimizer
    /// step; deadlock-free because every pass waits only for a stage before it of a group, chunk and micro-batch
    /// that every rank runs earlier.
    public static func forwardOnly(stages p: Int, virtualStages v: Int, microBatches m: Int, rank: Int) -> [PipelineAction] {
        let passes = stride(from: 0, to: m, by: p).flatMap { first in
            (0..<v).flatMap { chunk in (first..<min(first + p, m)).map { PipelineAction.forward(microBatch: $0, chunk: chunk) } }
        }
        return withMessages(passes, stages: p, virtualStages: v, rank: rank)
    }

    /// `passes` with the messages around them: each pass receives its input just before it runs and sends its
    /// output just after. Receives block and sends do not, so a rank waits only for the data its next pass needs.
    private static func withMessages(_ passes: [PipelineAction], stages p: Int, virtualStages v: Int,
                                     rank: Int) -> [PipelineAction] {
        let layout = StageLayout(ranks: p)
        let lastStage = p * v - 1
        var actions: [PipelineAction] = []
        for pass in passes {
            switch pass {
            case let .forward(microBatch, chunk):
                let stage = layout.stage(rank: rank, chunk: chunk)
                if stage > 0 { actions.append(Transfer.activation(microBatch, leaving: stage - 1).receive(layout)) }
                actions.append(pass)
                if stage < lastStage { actions.append(Transfer.activation(microBatch, leaving: stage).send(layout)) }
            case let .backward(microBatch, chunk), let .backwardInput(microBatch, chunk):
                let stage = layout.stage(rank: rank, chunk: chunk)
                if stage < lastStage {
                    actions.append(Transfer.gradient(microBatch, leaving: stage + 1).receive(layout))
                }
                actions.append(pass)
                if stage > 0 { actions.append(Transfer.gradient(microBatch, leaving: stage).send(layout)) }
            default:
                actions.append(pass)
            }
        }
        return actions
    }

    /// This rank's forward and backward passes in order, before the messages are added.
    private func passes(stages p: Int, virtualStages v: Int, microBatches m: Int, rank: Int) -> [PipelineAction] {
        switch self {
        case .gpipe:
            return (0..<m).map { .forward(microBatch: $0, chunk: 0) }
                + (0..<m).reversed().map { .backward(microBatch: $0, chunk: 0) }

        case .oneForwardOneBackward:
            // Micro-batch 0's gradient reaches rank r after its forward has crossed the p − r − 1 later stages
            // and its gradient has come back; the rank runs that many forwards meanwhile.
            return Self.oneForwardOneBackward(
                passes: m, warmUp: min(p - rank - 1, m),
                forward: { .forward(microBatch: $0, chunk: 0) }, backward: { .backward(microBatch: $0, chunk: 0) })

        case .interleaved:
            // Micro-batches go through the chunks in groups of p (micro-batches 0..<p on chunk 0, the same p on
            // chunk 1, …, on chunk v − 1, then the next p from chunk 0), so that a micro-batch leaving this rank's
            // chunk c comes back for chunk c + 1 just as the group's last one is done. Backwards take the chunks
            // in reverse. As Megatron-LM's get_model_chunk_id: the rank's k-th forward is micro-batch
            // (k / (p·v))·p + k mod p on chunk (k / p) mod v, its k-th backward the same micro-batch on chunk
            // v − 1 − (k / p) mod v.
            func microBatch(ofPass k: Int) -> Int { k / (p * v) * p + k % p }
            func forwardChunk(ofPass k: Int) -> Int { k / p % v }
            // Micro-batch 0 reaches this rank's last chunk only after the (v − 1)·p forwards of the earlier
            // chunks, then crosses p − r − 1 more stages and its gradient comes back over them. Megatron-LM runs
            // every forward first when m = p; under buffered sends this warm-up is deadlock-free there too and
            // holds fewer activations, so it serves every m.
            return Self.oneForwardOneBackward(
                passes: m * v, warmUp: min((p - rank - 1) * 2 + (v - 1) * p, m * v),
                forward: { .forward(microBatch: microBatch(ofPass: $0), chunk: forwardChunk(ofPass: $0)) },
                backward: { .backward(microBatch: microBatch(ofPass: $0), chunk: v - 1 - forwardChunk(ofPass: $0)) })

        case .zeroBubbleH1:
            // 1F1B's order with each backward split: B runs where 1F1B runs its backward, so activations are
            // freed as early and no more are held; W follows its B, except that rank r holds its first r W passes
            // back until after its last B. Why r: with equal F, B and W times the last rank starts only after
            // p − 1 forwards, so nothing finishes before 3m + p − 1 units, and ZB-H1 meets that by idling only
            // until its first gradient arrives. Gradients then travel back one stage per B, not per B + W, so
            // rank r's last B ends r units before rank 0's, and the held-back W passes fill those r units (what
            // is 1F1B's cool-down bubble).
            let warmUp = min(p - rank - 1, m)
            var order = (0..<warmUp).map { PipelineAction.forward(microBatch: $0, chunk: 0) }
            var weights = 0
            for step in 0..<(m - warmUp) {
                order += [.forward(microBatch: warmUp + step, chunk: 0), .backwardInput(microBatch: step, chunk: 0)]
                if step >= rank {
                    order.append(.backwardWeight(microBatch: weights, chunk: 0))
                    weights += 1
                }
            }
            for microBatch in (m - warmUp)..<m {
                order += [.backwardInput(microBatch: microBatch, chunk: 0),
                          .backwardWeight(microBatch: weights, chunk: 0)]
                weights += 1
            }
            return order + (weights..<m).map { .backwardWeight(microBatch: $0, chunk: 0) }
        }
    }

    /// `warmUp` forwards, then one forward and one backward at a time, then the backwards left: the shape of
    /// 1F1B and interleaved 1F1B, whose k-th forward and k-th backward passes are `forward(k)` and `backward(k)`.
    private static func oneForwardOneBackward(passes: Int, warmUp: Int, forward: (Int) -> PipelineAction,
                                              backward: (Int) -> PipelineAction) -> [PipelineAction] {
        var order = (0..<warmUp).map(forward)
        for step in 0..<(passes - warmUp) {
            order += [forward(warmUp + step), backward(step)]
        }
        return order + (passes - warmUp..<passes).map(backward)
    }

    private func checkShape(stages p: Int, virtualStages v: Int, microBatches m: Int, rank: Int) throws {
        let name = "pipeline schedule \(rawValue)"
        guard p >= 1 else { throw KeelError("\(name): needs at least 1 pipeline stage, got \(p)") }
        guard m >= 1 else { throw KeelError("\(name): needs at least 1 micro-batch, got \(m)") }
        if self == .interleaved {
            guard v >= 2 else { throw KeelError("\(name): needs at least 2 virtual stages per rank, got \(v)") }
            // Megatron-LM's requirement: micro-batches go through the chunks in whole groups of p.
            guard m % p == 0 else {
                throw KeelError("\(name): micro-batches (\(m)) must be a multiple of the pipeline stages (\(p))")
            }
        } else {
            guard v == 1 else {
                throw KeelError("\(name): takes 1 virtual stage per rank, got \(v) (use interleaved for more)")
            }
        }
        guard (0..<p).contains(rank) else { throw KeelError("\(name): rank \(rank) is outside 0..<\(p)") }
    }
}

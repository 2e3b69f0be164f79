import KeelComm
import KeelCore
import KeelModel

/// Runs one pipeline rank's schedule — its list of `PipelineAction`s — on its model chunks over the pipeline
/// group. Sends and receives are non-blocking: a receive is posted when the schedule reaches it and waited
/// for by the pass that needs it, and a send goes out as soon as its pass is done, so transfers overlap the
/// passes in between. A peer that never answers ends the step within the communicator's timeout, with an
/// error naming the transfer (and, over MPI, the rank) it was waiting on.
///
/// Each forward pass takes a free activation slot of its chunk and its backward pass (for a split backward,
/// its weight half) gives it back, so a chunk holds only as many micro-batches' activations as the schedule
/// keeps in flight. What a pass sends is
/// copied out of its slot first, so the slot can be reused while the message is on its way.
public final class PipelineExecutor {
    /// This rank's model chunks: chunk c is global stage c · p + rank.
    public let chunks: [Transformer]
    public let pipeline: any Communicator
    public let actions: [PipelineAction]
    private let batch: Int
    private let length: Int
    private let stageCount: Int
    /// Buffers of [batch · length, width] floats by transfer, kept across steps.
    private var incoming: [Transfer: FloatBuffer] = [:]
    private var outgoing: [Transfer: FloatBuffer] = [:]
    private var receives: [Transfer: CommunicationRequest] = [:]
    private var sends: [CommunicationRequest] = []
    private var freeSlots: [[Int]]
    private var slotCount: [Int]
    private var slots: [MicroBatchChunk: Int] = [:]

    /// A message of one micro-batch's activations or gradients, named by the global stage that receives it.
    private struct Transfer: Hashable {
        let gradient: Bool
        let microBatch: Int
        let receivingStage: Int
    }

    /// `chunks` must be the stages of this rank in `pipeline` (of p ranks), chunk c being global stage
    /// c · p + rank; every micro-batch is `batch` sequences of `length` tokens.
    public init(chunks: [Transformer], pipeline: any Communicator, actions: [PipelineAction], batch: Int, length: Int) {
        self.chunks = chunks
        self.pipeline = pipeline
        self.actions = actions
        self.batch = batch
        self.length = length
        stageCount = chunks.count * pipeline.size
        freeSlots = chunks.map { _ in [] }
        slotCount = chunks.map { _ in 0 }
    }

    /// The most micro-batches whose activations each chunk held at once so far (its slots).
    public var activationSlots: [Int] { slotCount }

    /// A pass of the last `run` and when it ran (monotonic seconds), for the measured bubble.
    public struct TimedPass: Sendable {
        public let action: PipelineAction
        public let start: Double
        public let end: Double
    }

    /// The forward and backward passes of the last `run`, in order.
    public private(set) var timeline: [TimedPass] = []

    /// Runs the schedule once: micro-batch k reads its token ids from `inputs(k)` on the first stage and its
    /// targets from `targets(k)` on the last, and every loss is scaled by `lossScale` (1/m averages the
    /// micro-batches). Gradients are added into each chunk's buffer. Returns the sum of the micro-batches'
    /// losses on the rank holding the last stage, 0 on the others. `label` names the step in errors.
    public func run(inputs: (Int) -> UnsafePointer<Int32>, targets: (Int) -> UnsafePointer<Int32>, lossScale: Float,
                    label: String) throws -> Double {
        var loss = 0.0
        timeline.removeAll(keepingCapacity: true)
        for action in actions {
            switch action {
            case let .forward(microBatch, chunk):
                let model = chunks[chunk], stage = globalStage(chunk), slot = acquireSlot(chunk, microBatch)
                let target = model.isLastStage ? targets(microBatch) : nil
                let input = model.isFirstStage
                    ? nil : try arrived(Transfer(gradient: false, microBatch: microBatch, receivingStage: stage))
                let start = monotonicSeconds()
                if let input {
                    loss += Double(model.forward(activations: input, targets: target, batch: batch, length: length,
                                                 lossScale: lossScale, slot: slot))
                } else {
                    loss += Double(model.forward(inputs: inputs(microBatch), targets: target, batch: batch, length: length,
                                                 lossScale: lossScale, slot: slot))
                }
                if !model.isLastStage {
                    copy(model.output(slot: slot), to: Transfer(gradient: false, microBatch: microBatch, receivingStage: stage + 1))
                }
                timeline.append(TimedPass(action: action, start: start, end: monotonicSeconds()))
            case let .backward(microBatch, chunk), let .backwardInput(microBatch, chunk):
                let model = chunks[chunk], stage = globalStage(chunk), key = MicroBatchChunk(microBatch: microBatch, chunk: chunk)
                let slot = slots[key]!
                let gradient = model.isLastStage
                    ? nil : try arrived(Transfer(gradient: true, microBatch: microBatch, receivingStage: stage))
                let start = monotonicSeconds()
                if case .backward = action {
                    if let gradient { model.backward(outputGradient: gradient, slot: slot) } else { model.backward(slot: slot) }
                } else {
                    model.backwardInput(outputGradient: gradient, slot: slot)
                }
                if !model.isFirstStage {
                    copy(model.inputGradient(slot: slot), to: Transfer(gradient: true, microBatch: microBatch, receivingStage: stage - 1))
                }
                // A split backward still needs the slot's activations for its weight half.
                if case .backward = action { releaseSlot(key) }
                timeline.append(TimedPass(action: action, start: start, end: monotonicSeconds()))
            case let .backwardWeight(microBatch, chunk):
                let key = MicroBatchChunk(microBatch: microBatch, chunk: chunk), start = monotonicSeconds()
                chunks[chunk].backwardWeight(slot: slots[key]!)
                releaseSlot(key)
                timeline.append(TimedPass(action: action, start: start, end: monotonicSeconds()))
            case let .sendActivation(microBatch, chunk, to):
                send(Transfer(gradient: false, microBatch: microBatch, receivingStage: globalStage(chunk) + 1), to: to, label: label)
            case let .sendGradient(microBatch, chunk, to):
                send(Transfer(gradient: true, microBatch: microBatch, receivingStage: globalStage(chunk) - 1), to: to, label: label)
            case let .receiveActivation(microBatch, chunk, from):
                receive(Transfer(gradient: false, microBatch: microBatch, receivingStage: globalStage(chunk)), from: from,
                        label: label)
            case let .receiveGradient(microBatch, chunk, from):
                receive(Transfer(gradient: true, microBatch: microBatch, receivingStage: globalStage(chunk)), from: from,
                        label: label)
            case .optimizerStep:
                for request in sends { try request.wait() }
                sends.removeAll()
            }
        }
        return loss
    }

    private func globalStage(_ chunk: Int) -> Int { chunk * pipeline.size + pipeline.rank }

    private var elements: Int { batch * length * chunks[0].config.width }

    private func buffer(_ buffers: inout [Transfer: FloatBuffer], _ transfer: Transfer) -> FloatBuffer {
        if let existing = buffers[transfer], existing.count == elements { return existing }
        let created = FloatBuffer(count: elements)
        buffers[transfer] = created
        return created
    }

    private func acquireSlot(_ chunk: Int, _ microBatch: Int) -> Int {
        let slot = freeSlots[chunk].popLast() ?? {
            slotCount[chunk] += 1
            return slotCount[chunk] - 1
        }()
        slots[MicroBatchChunk(microBatch: microBatch, chunk: chunk)] = slot
        return slot
    }

    private func releaseSlot(_ key: MicroBatchChunk) {
        freeSlots[key.chunk].append(slots.removeValue(forKey: key)!)
    }

    private func copy(_ source: UnsafePointer<Float>, to transfer: Transfer) {
        buffer(&outgoing, transfer).pointer.update(from: source, count: elements)
    }

    private func send(_ transfer: Transfer, to peer: Int, label: String) {
        let data = buffer(&outgoing, transfer)
        sends.append(pipeline.startSend(UnsafeBufferPointer(start: data.pointer, count: elements), to: peer,
                                        tag: tag(transfer), label: "\(label): \(describe(transfer)) to pipeline rank \(peer)"))
    }

    private func receive(_ transfer: Transfer, from peer: Int, label: String) {
        let data = buffer(&incoming, transfer)
        receives[transfer] = pipeline.startReceive(UnsafeMutableBufferPointer(start: data.pointer, count: elements),
                                                   from: peer, tag: tag(transfer),
                                                   label: "\(label): \(describe(transfer)) from pipeline rank \(peer)")
    }

    /// The received data of `transfer`, once it has arrived.
    private func arrived(_ transfer: Transfer) throws -> UnsafePointer<Float> {
        guard let request = receives.removeValue(forKey: transfer) else {
            throw KeelError("pipeline: the schedule runs a pass before receiving its \(describe(transfer))")
        }
        try request.wait()
        return UnsafePointer(incoming[transfer]!.pointer)
    }

    /// Unique per message of a step, and the same on both ends.
    private func tag(_ transfer: Transfer) -> Int {
        (transfer.microBatch * stageCount + transfer.receivingStage) * 2 + (transfer.gradient ? 1 : 0)
    }

    private func describe(_ transfer: Transfer) -> String {
        "\(transfer.gradient ? "gradient" : "activations") of micro-batch \(transfer.microBatch) for stage \(transfer.receivingStage)"
    }
}
